//! The task model: ids, statuses and the record kept in the `task:{task_id}` hash.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// A task's id: a UUID, always written lowercase and hyphenated (the contract's form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(Uuid);

impl TaskId {
    /// A fresh random (v4) id for a new task.
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses an id in the hyphenated form (`8-4-4-4-12` hex digits); upper case is accepted
    /// and normalised, because the Redis key is always written in lower case.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("task_id is empty".into());
        }
        let characters = raw.chars().count();
        if characters != 36 {
            return Err(format!(
                "task_id must be a hyphenated UUID of 36 characters (like {EXAMPLE_ID}), got {characters} characters"
            ));
        }
        Uuid::try_parse(raw).map(Self).map_err(|_| {
            format!("task_id must be a hyphenated UUID (like {EXAMPLE_ID}), got {raw:?}")
        })
    }

    /// The id's hyphenated lowercase text.
    pub fn to_text(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

const EXAMPLE_ID: &str = "123e4567-e89b-42d3-a456-426614174000";

/// The four states of the contract. Others may write unknown values; those are kept as text
/// ([`RawStatus::Unknown`]) and treated as in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Created, not yet picked up by the Processor.
    Pending,
    /// The Processor is working on it.
    Processing,
    /// Finished; `result_file_key` names the result.
    Completed,
    /// Ended without a result; `error_message` says why.
    Failed,
}

impl TaskStatus {
    /// The wire and Redis spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    /// Reads the wire spelling; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "PENDING" => Some(Self::Pending),
            "PROCESSING" => Some(Self::Processing),
            "COMPLETED" => Some(Self::Completed),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }

    /// COMPLETED and FAILED are final: nothing may change them, and they carry the TTL.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status as found in a task hash: one of the contract's four, or whatever text someone else
/// wrote there (kept as it is, and treated as in progress: never final, never overwritten as
/// if it were PENDING).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawStatus {
    /// One of the contract's four.
    Known(TaskStatus),
    /// Text outside the contract.
    Unknown(String),
}

impl RawStatus {
    /// Reads a status text.
    pub fn parse(text: &str) -> Self {
        TaskStatus::parse(text).map_or_else(|| Self::Unknown(text.to_owned()), Self::Known)
    }

    /// The text as stored.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(status) => status.as_str(),
            Self::Unknown(text) => text,
        }
    }

    /// The status, when it is one of the contract's four.
    pub fn known(&self) -> Option<TaskStatus> {
        match self {
            Self::Known(status) => Some(*status),
            Self::Unknown(_) => None,
        }
    }

    /// The final status (COMPLETED or FAILED), if it is one.
    pub fn final_status(&self) -> Option<TaskStatus> {
        self.known().filter(|status| status.is_terminal())
    }

    /// Whether the task is final (COMPLETED or FAILED).
    pub fn is_final(&self) -> bool {
        self.final_status().is_some()
    }
}

impl From<TaskStatus> for RawStatus {
    fn from(status: TaskStatus) -> Self {
        Self::Known(status)
    }
}

impl fmt::Display for RawStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hash's field names (the README's "The contract in brief"), used by both stores.
pub mod fields {
    /// The task's id.
    pub const TASK_ID: &str = "task_id";
    /// PENDING | PROCESSING | COMPLETED | FAILED.
    pub const STATUS: &str = "status";
    /// The original video's key, as given to CreateTask.
    pub const ORIGINAL_FILE_KEY: &str = "original_file_key";
    /// The result's key, set with COMPLETED.
    pub const RESULT_FILE_KEY: &str = "result_file_key";
    /// Why the task failed, set with FAILED.
    pub const ERROR_MESSAGE: &str = "error_message";
    /// When the task was created (RFC 3339, UTC, `Z`).
    pub const CREATED_AT: &str = "created_at";
    /// When the hash was last written (RFC 3339, UTC, `Z`).
    pub const UPDATED_AT: &str = "updated_at";
}

/// A task as stored: every field is the hash's text, as whoever wrote it left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// `task_id`.
    pub task_id: String,
    /// `status`, as written.
    pub status: RawStatus,
    /// `original_file_key`.
    pub original_file_key: String,
    /// `result_file_key`.
    pub result_file_key: String,
    /// `error_message`.
    pub error_message: String,
    /// `created_at`.
    pub created_at: String,
    /// `updated_at`.
    pub updated_at: String,
}

impl TaskRecord {
    /// Whether the task was cancelled: FAILED with an `error_message` that starts with
    /// `cancelled` (the contract's definition).
    pub fn is_cancelled(&self) -> bool {
        self.status.known() == Some(TaskStatus::Failed)
            && self.error_message.starts_with("cancelled")
    }

    /// A new PENDING task created `now`.
    pub fn new_pending(id: TaskId, original_file_key: &str, now: &str) -> Self {
        Self {
            task_id: id.to_text(),
            status: RawStatus::Known(TaskStatus::Pending),
            original_file_key: original_file_key.to_owned(),
            result_file_key: String::new(),
            error_message: String::new(),
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }

    /// Builds a record from a hash's field/value pairs; `None` when the hash has no `status`
    /// (an empty reply means the key does not exist).
    pub fn from_pairs<I, K, V>(pairs: I) -> Option<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut record = Self {
            task_id: String::new(),
            status: RawStatus::Unknown(String::new()),
            original_file_key: String::new(),
            result_file_key: String::new(),
            error_message: String::new(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        let mut has_status = false;
        for (field, value) in pairs {
            let slot = match field.as_ref() {
                fields::TASK_ID => &mut record.task_id,
                fields::STATUS => {
                    has_status = true;
                    record.status = RawStatus::parse(&value.into());
                    continue;
                }
                fields::ORIGINAL_FILE_KEY => &mut record.original_file_key,
                fields::RESULT_FILE_KEY => &mut record.result_file_key,
                fields::ERROR_MESSAGE => &mut record.error_message,
                fields::CREATED_AT => &mut record.created_at,
                fields::UPDATED_AT => &mut record.updated_at,
                _ => continue,
            };
            *slot = value.into();
        }
        has_status.then_some(record)
    }

    /// The hash's field/value pairs, in the contract's order.
    pub fn to_pairs(&self) -> [(&'static str, &str); 7] {
        [
            (fields::TASK_ID, &self.task_id),
            (fields::STATUS, self.status.as_str()),
            (fields::ORIGINAL_FILE_KEY, &self.original_file_key),
            (fields::RESULT_FILE_KEY, &self.result_file_key),
            (fields::ERROR_MESSAGE, &self.error_message),
            (fields::CREATED_AT, &self.created_at),
            (fields::UPDATED_AT, &self.updated_at),
        ]
    }
}

/// The contract's timestamp form: RFC 3339, UTC, whole seconds, `Z` (`2025-10-30T10:00:00Z`).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// [`timestamp`] of the current time.
pub fn now_timestamp() -> String {
    timestamp(Utc::now())
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

/// Reads a timestamp written by anyone (any RFC 3339 form).
pub fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hyphenated_v4() {
        let id = TaskId::new_v4().to_text();
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_lowercase());
        assert_eq!(&id[14..15], "4", "version nibble of {id}");
    }

    #[test]
    fn parse_accepts_hyphenated_and_normalises_case() {
        let id = TaskId::parse("123E4567-E89B-42D3-A456-426614174000").unwrap();
        assert_eq!(id.to_text(), "123e4567-e89b-42d3-a456-426614174000");
    }

    #[test]
    fn parse_rejects_other_forms_with_a_reason() {
        for bad in [
            "",
            "abc",
            "123e4567e89b42d3a456426614174000",
            "{123e4567-e89b-42d3-a456-42661417400}",
            "123e4567-e89b-42d3-a456-42661417400g",
            "../../../../../../../../etc/passwd00",
        ] {
            let err = TaskId::parse(bad).unwrap_err();
            assert!(err.contains("task_id"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn timestamps_are_whole_seconds_with_z() {
        let at = DateTime::parse_from_rfc3339("2025-10-30T10:00:00.123+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(at), "2025-10-30T10:00:00Z");
        assert_eq!(
            parse_timestamp("2025-10-30T10:00:00Z"),
            Some(at.with_nanosecond_zero())
        );
    }

    trait NanoZero {
        fn with_nanosecond_zero(self) -> Self;
    }
    impl NanoZero for DateTime<Utc> {
        fn with_nanosecond_zero(self) -> Self {
            use chrono::Timelike;
            self.with_nanosecond(0).unwrap()
        }
    }

    #[test]
    fn record_round_trips_through_pairs_and_needs_a_status() {
        let record = TaskRecord::new_pending(TaskId::new_v4(), "a/b.mp4", "2025-10-30T10:00:00Z");
        let back = TaskRecord::from_pairs(record.to_pairs()).unwrap();
        assert_eq!(back, record);
        assert!(TaskRecord::from_pairs([("task_id", "x")]).is_none());
        assert!(TaskRecord::from_pairs(Vec::<(String, String)>::new()).is_none());
    }

    #[test]
    fn a_status_outside_the_contract_is_kept_and_is_not_final() {
        let odd = RawStatus::parse("RETRYING");
        assert_eq!(odd, RawStatus::Unknown("RETRYING".into()));
        assert_eq!(odd.as_str(), "RETRYING");
        assert!(!odd.is_final());
        assert_eq!(
            RawStatus::parse("FAILED").final_status(),
            Some(TaskStatus::Failed)
        );
        assert_eq!(RawStatus::parse("PROCESSING").final_status(), None);
    }
}
