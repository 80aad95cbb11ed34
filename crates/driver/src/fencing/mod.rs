//! Volume fencing: ControllerPublish/Unpublish guarantee a single-node volume is attached to at
//! most one node, with state that survives controller restarts.

pub mod cluster;
