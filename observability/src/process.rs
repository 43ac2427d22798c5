//! What Linux's `/proc` says about a process: its resident memory.

/// The resident memory (`VmRSS`) of process `pid`, in bytes; `None` if it cannot be read.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let bytes = super::resident_bytes(std::process::id()).expect("VmRSS of this process");
        assert!(bytes > 0);
    }

    #[test]
    fn no_such_process_is_none() {
        assert_eq!(super::resident_bytes(u32::MAX), None);
    }
}
