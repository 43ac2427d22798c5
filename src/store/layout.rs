//! The names both stores write under: the task hash's key, the service's own keys and the
//! dispatch entries' fields. The Lua scripts in `redis/scripts/` spell the same names (a test
//! below checks that they use no others).

use crate::task::TaskId;

/// The consumer group every instance's dispatcher joins.
pub const GROUP: &str = "dispatchers";

/// The contract's key of a task hash: `task:{task_id}`.
pub fn task_key(task_id: TaskId) -> String {
    format!("task:{task_id}")
}

/// The fields of a dispatch entry (besides the W3C trace-context fields it carries).
pub mod entry_fields {
    /// The task to hand to the Processor.
    pub const TASK_ID: &str = "task_id";
    /// Its original file.
    pub const ORIGINAL_FILE_KEY: &str = "original_file_key";
}

/// The service's own keys under `TASK_REDIS_KEY_PREFIX` (never matching `task:*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// The dispatch queue: a stream with the consumer group [`GROUP`].
    pub stream: String,
    /// Accepted, unfinished tasks by next check time: a sorted set.
    pub watch: String,
    /// Every task, newest first: a sorted set of [`index_member`]s (all scores 0, ordered by
    /// their text), for ListTasks.
    pub index: String,
    /// The dispatch entry of each task not yet accepted: a hash task id → entry id, so that a
    /// cancel can take the entry out of the queue.
    pub entries: String,
    /// Cancellations, for the instances delivering the task: a pub/sub channel.
    pub cancellations: String,
    prefix: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            stream: format!("{prefix}:dispatch"),
            watch: format!("{prefix}:watch"),
            index: format!("{prefix}:tasks"),
            entries: format!("{prefix}:entries"),
            cancellations: format!("{prefix}:cancellations"),
            prefix: prefix.to_owned(),
        }
    }

    /// The idempotency record of a CreateTask `request_id` (a string, expiring with the window).
    pub fn request(&self, request_id: &str) -> String {
        format!("{}:request:{request_id}", self.prefix)
    }
}

/// The largest creation time (ms since the epoch) an index member can hold.
const INDEX_MAX_MS: u64 = 9_999_999_999_999;

/// A task's member in the index: its creation time counted down from [`INDEX_MAX_MS`]
/// (13 digits, so that text order is newest first), `:`, its id.
pub fn index_member(created_ms: u64, task_id: TaskId) -> String {
    format!("{:013}:{task_id}", INDEX_MAX_MS.saturating_sub(created_ms))
}

/// The task id of an index member.
pub fn index_task(member: &str) -> Option<TaskId> {
    TaskId::parse(member.get(14..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::fields;

    #[test]
    fn index_members_sort_newest_first_and_give_their_task_back() {
        let id = TaskId::new_v4();
        let older = index_member(1_700_000_000_000, id);
        let newer = index_member(1_700_000_000_001, TaskId::new_v4());
        assert!(newer < older, "text order is newest first");
        assert_eq!(older.len(), 13 + 1 + 36);
        assert_eq!(index_task(&older), Some(id));
        assert_eq!(index_task("garbage"), None);
    }

    /// Every quoted lowercase word of the scripts that names a field is one of ours.
    #[test]
    fn the_scripts_spell_the_same_field_names() {
        let known = [
            fields::TASK_ID,
            fields::STATUS,
            fields::ORIGINAL_FILE_KEY,
            fields::RESULT_FILE_KEY,
            fields::ERROR_MESSAGE,
            fields::CREATED_AT,
            fields::UPDATED_AT,
            entry_fields::TASK_ID,
            entry_fields::ORIGINAL_FILE_KEY,
        ];
        // Words the scripts quote that are not field names: commands' options, their replies'
        // keys and the scripts' own answers.
        let other = [
            "missing",
            "final",
            "failed",
            "changed",
            "watching",
            "name",
            "pending",
            "idle",
            "created",
            "existing",
            "conflict",
            "cancelled",
            "accepted",
            "done",
            "more",
            "agreed",
            "unaccepted",
        ];
        let scripts = [
            include_str!("redis/scripts/accepted.lua"),
            include_str!("redis/scripts/create.lua"),
            include_str!("redis/scripts/fail.lua"),
            include_str!("redis/scripts/forget_consumers.lua"),
            include_str!("redis/scripts/lease.lua"),
            include_str!("redis/scripts/settle.lua"),
            include_str!("redis/scripts/cancel.lua"),
            include_str!("redis/scripts/list.lua"),
            include_str!("redis/scripts/trim_index.lua"),
        ];
        for script in scripts {
            for quoted in script.split('\'').skip(1).step_by(2) {
                let lowercase_word = !quoted.is_empty()
                    && quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                if lowercase_word {
                    assert!(
                        known.contains(&quoted) || other.contains(&quoted),
                        "a script names {quoted:?}, which is no field of ours"
                    );
                }
            }
        }
    }
}
