// rds-csi-fakecri: the two node-side services a kubelet needs besides the CSI driver, for the
// kubelet suite (scripts/test-kubelet), where no container runtime can run.
//
//   - -runtime-socket: Kubernetes' own CRI test fake (pkg/kubelet/cri/remote/fake), so kubelet
//     runs pods without containers while the volume path (stage, publish, stats, unpublish,
//     unstage) stays fully real. The fake leaves a container's log path empty, and kubelet then
//     removes every match of "*" in its working directory when it removes the container, so
//     CreateContainer here fills it in from the pod's log directory. It also reports what
//     kubelet's /stats/summary cannot do without (the fake has none of it by default): an image
//     filesystem, a non-zero image size (kubelet refuses a present image of size 0), and stats
//     for each container (a pod without container stats is left out of the summary, volume
//     stats included).
//   - -registration-socket: the plugin registration service node-driver-registrar provides in a
//     cluster, so kubelet's plugin watcher finds the CSI driver's endpoint.
//
// Built inside the Kubernetes source tree by scripts/kubelet/build.sh (it needs that tree's
// vendored packages); it is test tooling, never shipped.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	kubeapi "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"k8s.io/kubernetes/pkg/kubelet/cri/remote/fake"
)

// runtime is the CRI fake with container log paths set.
type runtime struct {
	*fake.RemoteRuntime
}

func (r runtime) CreateContainer(ctx context.Context, req *kubeapi.CreateContainerRequest) (*kubeapi.CreateContainerResponse, error) {
	resp, err := r.RemoteRuntime.CreateContainer(ctx, req)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(req.GetSandboxConfig().GetLogDirectory(), req.GetConfig().GetLogPath())
	svc := r.RemoteRuntime.RuntimeService
	svc.Lock()
	if c, ok := svc.Containers[resp.ContainerId]; ok {
		c.ContainerStatus.LogPath = logPath
	}
	svc.FakeContainerStats[resp.ContainerId] = &kubeapi.ContainerStats{
		Attributes: &kubeapi.ContainerAttributes{
			Id:          resp.ContainerId,
			Metadata:    req.GetConfig().GetMetadata(),
			Labels:      req.GetConfig().GetLabels(),
			Annotations: req.GetConfig().GetAnnotations(),
		},
	}
	svc.Unlock()
	return resp, nil
}

func (r runtime) RemoveContainer(ctx context.Context, req *kubeapi.RemoveContainerRequest) (*kubeapi.RemoveContainerResponse, error) {
	svc := r.RemoteRuntime.RuntimeService
	svc.Lock()
	delete(svc.FakeContainerStats, req.GetContainerId())
	svc.Unlock()
	return r.RemoteRuntime.RemoveContainer(ctx, req)
}

// registrar answers kubelet's plugin watcher for one CSI driver.
type registrar struct {
	driver   string
	endpoint string
}

func (g registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              g.driver,
		Endpoint:          g.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (g registrar) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.PluginRegistered {
		fmt.Fprintf(os.Stderr, "fakecri: kubelet registered plugin %s\n", g.driver)
	} else {
		fmt.Fprintf(os.Stderr, "fakecri: kubelet refused plugin %s: %s\n", g.driver, s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

func listen(path string) (net.Listener, error) {
	// A socket left by an earlier run would make bind fail.
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	return net.Listen("unix", path)
}

func main() {
	runtimeSocket := flag.String("runtime-socket", "", "serve the fake CRI runtime and image services here")
	imageFs := flag.String("image-fs", "/var/lib/kubelet", "directory reported as the image filesystem")
	regSocket := flag.String("registration-socket", "", "serve plugin registration here (kubelet's plugins_registry/<driver>-reg.sock)")
	driver := flag.String("driver-name", "", "CSI driver name to register")
	endpoint := flag.String("csi-endpoint", "", "CSI socket path kubelet is told to dial")
	flag.Parse()
	if *runtimeSocket == "" && *regSocket == "" {
		fmt.Fprintln(os.Stderr, "fakecri: give -runtime-socket and/or -registration-socket")
		os.Exit(2)
	}
	var servers []*grpc.Server
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "fakecri: %v\n", err)
		os.Exit(1)
	}
	if *runtimeSocket != "" {
		f := fake.NewFakeRemoteRuntime()
		// What fake's own Start does besides serving (its server has the unwrapped
		// CreateContainer): report the runtime and its network ready.
		f.RuntimeService.FakeStatus = &kubeapi.RuntimeStatus{
			Conditions: []*kubeapi.RuntimeCondition{
				{Type: kubeapi.RuntimeReady, Status: true},
				{Type: kubeapi.NetworkReady, Status: true},
			},
		}
		f.ImageService.SetFakeImageSize(1 << 20)
		f.ImageService.SetFakeFilesystemUsage([]*kubeapi.FilesystemUsage{{
			Timestamp:  time.Now().UnixNano(),
			FsId:       &kubeapi.FilesystemIdentifier{Mountpoint: *imageFs},
			UsedBytes:  &kubeapi.UInt64Value{Value: 1 << 20},
			InodesUsed: &kubeapi.UInt64Value{Value: 1},
		}})
		s := grpc.NewServer()
		r := runtime{f}
		kubeapi.RegisterRuntimeServiceServer(s, r)
		kubeapi.RegisterImageServiceServer(s, r)
		l, err := listen(*runtimeSocket)
		if err != nil {
			fail(err)
		}
		go func() { _ = s.Serve(l) }()
		servers = append(servers, s)
	}
	if *regSocket != "" {
		if *driver == "" || *endpoint == "" {
			fail(fmt.Errorf("-registration-socket needs -driver-name and -csi-endpoint"))
		}
		s := grpc.NewServer()
		registerapi.RegisterRegistrationServer(s, registrar{driver: *driver, endpoint: *endpoint})
		l, err := listen(*regSocket)
		if err != nil {
			fail(err)
		}
		go func() { _ = s.Serve(l) }()
		servers = append(servers, s)
	}
	fmt.Fprintln(os.Stderr, "fakecri: serving")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, s := range servers {
		s.Stop()
	}
	if *runtimeSocket != "" {
		_ = os.Remove(*runtimeSocket)
	}
	if *regSocket != "" {
		_ = os.Remove(*regSocket)
	}
}
