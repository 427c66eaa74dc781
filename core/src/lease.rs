//! Who holds a lease: [`LeaseHolder`], written in records and queue rows as
//! `HOST:PID#SLOT@MESSAGE` — the process ([`crate::db::owner_id`]), the
//! worker slot in it, and the queue message the job came in. Built and
//! parsed here only.

use std::fmt;

/// The holder of an object or message lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseHolder(String);

impl LeaseHolder {
    /// The holder for worker slot `slot` of this process, running the job of
    /// queue message `message`.
    pub fn new(slot: u64, message: &str) -> Self {
        Self(format!("{}#{slot}@{message}", crate::db::owner_id()))
    }

    /// A holder as written in a record (any string: older records and other
    /// tools' names are kept as they are).
    pub fn parse(s: &str) -> Self {
        Self(s.to_string())
    }

    /// The holder as written in records.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The process part, `HOST:PID`.
    pub fn process(&self) -> &str {
        self.0.split('#').next().unwrap_or(&self.0)
    }

    /// The queue message id, if the holder names one.
    pub fn message(&self) -> Option<&str> {
        self.0.rsplit_once('@').map(|(_, id)| id)
    }

    /// Whether both run the job of the same queue message (a redelivery of
    /// a message whose earlier delivery died holding the lease).
    pub fn same_message(&self, other: &LeaseHolder) -> bool {
        matches!((self.message(), other.message()), (Some(a), Some(b)) if a == b)
    }

    /// Whether the holder is a process of this host that no longer runs, so
    /// its leases can be taken over without waiting for them to lapse.
    pub fn process_is_gone(&self) -> bool {
        let Some((host, pid)) = self.process().rsplit_once(':') else {
            return false;
        };
        let me = crate::db::owner_id();
        let Some((my_host, _)) = me.rsplit_once(':') else {
            return false;
        };
        if host != my_host {
            return false;
        }
        let Ok(pid) = pid.parse::<u32>() else { return false };
        let proc = std::path::Path::new("/proc");
        proc.join("self").exists() && !proc.join(pid.to_string()).exists()
    }
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_name_their_process_and_message() {
        let a = LeaseHolder::new(3, "m-1");
        assert!(a.as_str().ends_with("#3@m-1"), "{a}");
        assert_eq!(a.process(), crate::db::owner_id());
        assert_eq!(a.message(), Some("m-1"));
        assert!(a.same_message(&LeaseHolder::parse("other:1#9@m-1")));
        assert!(!a.same_message(&LeaseHolder::parse("other:1#9@m-2")));
        assert!(!LeaseHolder::parse("plain").same_message(&LeaseHolder::parse("plain")));
        assert!(!a.process_is_gone(), "this process runs");
        assert!(LeaseHolder::parse(&format!(
            "{}#1@m",
            a.process().replace(&std::process::id().to_string(), "999999999")
        ))
        .process_is_gone());
    }
}
