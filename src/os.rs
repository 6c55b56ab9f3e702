//! What the broker asks of the operating system at start: as many open files as it may have.
//! Every connection is a descriptor, and the usual soft limit (1024) is far below
//! `server.max_connections`; past it, accepts fail and even `/healthz` stops answering.

/// The open-file limits before and after [`raise_open_file_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit found at start.
    pub was: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit, which only a privileged process may raise.
    pub hard: u64,
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit.
///
/// # Errors
///
/// The system's error when the limits cannot be read or set.
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let (was, hard) = rlimit::Resource::NOFILE.get()?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok(OpenFileLimit { was, soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let limit = raise_open_file_limit().unwrap();
        assert!(limit.soft >= limit.was, "{limit:?}");
        assert_eq!(limit.soft, limit.hard, "{limit:?}");
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(soft, limit.soft);
    }
}
