//! Output variants: the shapes of RouterOS text the driver's parsers know, so a client can be
//! tested against each of them over real SSH, not only against the default terminal layout.

/// How listings are laid out. Failure texts are unaffected (see `Faults::errors_on_stderr` for
/// where they go).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputStyle {
    /// An 80-column terminal, as seen on hardware: CRLF, one line per property group, long
    /// values cut mid-token, byte counts space-grouped (`size=1 073 741 824`), `file-size=`
    /// in one-decimal binary units.
    #[default]
    Terminal,
    /// A 40-column terminal: grouped numbers and paths wrap across several lines.
    Narrow,
    /// One line per record, LF endings, every number raw bytes (`file-size=1073741824`): the
    /// shape of the earliest samples, and of a terminal too wide to wrap.
    OneLine,
}

impl OutputStyle {
    /// Content columns per line.
    pub(crate) fn width(self) -> usize {
        match self {
            OutputStyle::Terminal => 79,
            OutputStyle::Narrow => 40,
            OutputStyle::OneLine => usize::MAX,
        }
    }

    /// Whether each property group starts a new line.
    pub(crate) fn group_lines(self) -> bool {
        self != OutputStyle::OneLine
    }

    /// Byte counts as printed in `size=`/`free=`.
    pub(crate) fn count(self, n: u64) -> String {
        match self {
            OutputStyle::OneLine => n.to_string(),
            _ => crate::render::grouped(n),
        }
    }

    /// Sizes as printed in `file-size=` and `/file` `size=`.
    pub(crate) fn size(self, n: u64) -> String {
        match self {
            OutputStyle::OneLine => n.to_string(),
            _ => crate::render::human(n),
        }
    }

    /// Applies the line ending to a rendered CRLF listing.
    pub(crate) fn finish(self, text: String) -> String {
        match self {
            OutputStyle::OneLine => text.replace("\r\n", "\n"),
            _ => text,
        }
    }
}
