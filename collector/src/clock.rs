//! Times as the store keeps them: nanoseconds since the Unix epoch, in an `i64`.

use std::time::SystemTime;

/// Now, in ns since the epoch.
pub fn now_ns() -> i64 {
    ns(SystemTime::now())
}

/// `time` in ns since the epoch (0 before it, `i64::MAX` past 2262).
pub fn ns(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
