//! ListTasks: newest first, optionally one status, a page at a time. The page token is the last
//! index member looked at, so paging is stable while tasks are being created (new ones come
//! before it); each call looks at a bounded number of index members, so its cost follows the
//! page, not what is stored — a rare status may come back short, with a token to go on.

use crate::{
    error::Error,
    proto::task::{ListTasksRequest, ListTasksResponse},
    store::ListQuery,
    task::TaskStatus,
};

use super::{TaskApi, response};

/// Tasks per page when the caller asks for none.
const DEFAULT_PAGE: usize = 50;
/// Tasks per page at most.
const MAX_PAGE: usize = 500;
/// Index members looked at per task asked for, at most.
const LOOK_PER_TASK: usize = 20;
/// What every page token starts with (its version).
const TOKEN_VERSION: &str = "v1";

impl TaskApi {
    /// One page.
    pub async fn list(&self, request: &ListTasksRequest) -> Result<ListTasksResponse, Error> {
        let status = match request.status.as_str() {
            "" => None,
            text => Some(TaskStatus::parse(text).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "status {text:?} is not one of PENDING, PROCESSING, COMPLETED, FAILED (or empty for all)"
                ))
            })?),
        };
        let page_size = match request.page_size {
            n if n < 0 => {
                return Err(Error::InvalidArgument(format!(
                    "page_size {n} is negative; give 1 to {MAX_PAGE} (0 for {DEFAULT_PAGE})"
                )));
            }
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(read_token(token, status)?),
        };
        let page = self
            .parts
            .store
            .list(ListQuery {
                after: after.as_deref(),
                status,
                page_size,
                budget: page_size * LOOK_PER_TASK,
            })
            .await?;
        Ok(ListTasksResponse {
            tasks: page.tasks.into_iter().map(response::of_listed).collect(),
            next_page_token: page
                .next
                .map(|member| write_token(&member, status))
                .unwrap_or_default(),
        })
    }
}

/// An opaque token: the version, the status filter and where to go on, hex-encoded.
fn write_token(member: &str, status: Option<TaskStatus>) -> String {
    let status = status.map_or("", TaskStatus::as_str);
    hex::encode(format!("{TOKEN_VERSION}|{status}|{member}"))
}

/// Where a token says to go on; it must be one of ours, for the same status filter.
fn read_token(token: &str, status: Option<TaskStatus>) -> Result<String, Error> {
    let not_ours = || {
        Error::InvalidArgument(
            "page_token is not one this service gave: pass next_page_token as it came".into(),
        )
    };
    let text = hex::decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(not_ours)?;
    let mut parts = text.splitn(3, '|');
    let (Some(TOKEN_VERSION), Some(filter), Some(member)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(not_ours());
    };
    if filter != status.map_or("", TaskStatus::as_str) {
        return Err(Error::InvalidArgument(format!(
            "page_token belongs to a listing of status {filter:?}; list with that status, or start again without a token"
        )));
    }
    if crate::store::layout::index_task(member).is_none() {
        return Err(not_ours());
    }
    Ok(member.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{store::layout::index_member, task::TaskId};

    #[test]
    fn tokens_round_trip_and_belong_to_their_filter() {
        let member = index_member(1_700_000_000_000, TaskId::new_v4());
        let token = write_token(&member, Some(TaskStatus::Failed));
        assert_eq!(
            read_token(&token, Some(TaskStatus::Failed)).unwrap(),
            member
        );
        assert!(read_token(&token, None).is_err(), "another filter");
        assert!(read_token("zz", None).is_err());
        assert!(read_token(&hex::encode("v1||garbage"), None).is_err());
    }
}
