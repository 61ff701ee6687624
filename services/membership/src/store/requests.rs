//! Access requests: made with the requester's approval, who was asked and the e-mails to them
//! in one transaction; approved, declined or cancelled by a write conditioned on the version
//! read and on the request still PENDING, so two concurrent last approvals grant once and a
//! decline racing an approval has one outcome. The last approval makes the grant in the same
//! transaction (the OWNER counter re-checked), and queues the requester's e-mail.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use tenantry_platform::db::StoreError;
use tenantry_platform::{AccountId, UserId};

use super::entities::{access_request, access_request_approval, access_request_approver, member};
use super::request_mails::{MailKind, queue_mails};
use super::{Store, as_read, change_counts, insert_member, load_member, placeholders, replica};
use crate::domain::owners;
use crate::domain::requests::{AccessRequest, Approval, Grant, RequestState, grant_for};
use crate::domain::{Member, MembershipError, Role};
use crate::events::{MemberChange, RequestChange, member_event, request_event};

fn to_request(
    row: access_request::Model,
    approvals: Vec<Approval>,
) -> Result<AccessRequest, MembershipError> {
    let corrupt = |what: &str| {
        MembershipError::Corrupt(format!("{what} of access request {}", row.request_id))
    };
    Ok(AccessRequest {
        account_id: AccountId::trusted(row.account_id.clone()),
        subject: UserId::trusted(row.subject_user_id.clone()),
        subject_email: row.subject_email.clone(),
        role: Role::parse(&row.role).ok_or_else(|| corrupt("role"))?,
        reason: row.reason.clone(),
        access_duration: row.access_duration_seconds.map(Duration::seconds),
        state: RequestState::parse(&row.state).ok_or_else(|| corrupt("state"))?,
        requester: UserId::trusted(row.requester.clone()),
        approvals,
        required_approvals: row.required_approvals,
        escalated: row.escalated,
        create_time: row.create_time,
        expire_time: row.expire_time,
        decide_time: row.decide_time,
        decided_by: row.decided_by.clone(),
        decline_reason: row.decline_reason.clone(),
        version: row.version,
        request_id: row.request_id,
    })
}

/// `rows` as requests, each with its approvals (one query for all).
async fn with_approvals(
    conn: &impl ConnectionTrait,
    rows: Vec<access_request::Model>,
) -> Result<Vec<AccessRequest>, MembershipError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let approvals = access_request_approval::Entity::find()
        .filter(
            access_request_approval::Column::RequestId
                .is_in(rows.iter().map(|row| row.request_id.as_str())),
        )
        .order_by_asc(access_request_approval::Column::ApproveTime)
        .order_by_asc(access_request_approval::Column::Approver)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|row| {
            let mine = approvals
                .iter()
                .filter(|approval| approval.request_id == row.request_id)
                .map(|approval| Approval {
                    approver: UserId::trusted(approval.approver.clone()),
                    approve_time: approval.approve_time,
                    operator: approval.operator,
                })
                .collect();
            to_request(row, mine)
        })
        .collect()
}

pub(super) async fn load_request(
    conn: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<AccessRequest>, MembershipError> {
    let Some(row) = access_request::Entity::find_by_id(request_id.to_string())
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(with_approvals(conn, vec![row]).await?.pop())
}

/// Moves `read` to `state` (and the version on) if it is still PENDING at that version and
/// not lapsed at `now`; else the error that says why.
async fn decide(
    tx: &impl ConnectionTrait,
    read: &AccessRequest,
    state: RequestState,
    decided_by: Option<&UserId>,
    decline_reason: Option<&str>,
    etag_sent: bool,
    now: DateTime<Utc>,
) -> Result<(), MembershipError> {
    use access_request::Column as C;
    let mut update = access_request::Entity::update_many()
        .col_expr(C::State, Expr::value(state.as_str()))
        .col_expr(C::Version, Expr::value(read.version + 1));
    if let Some(by) = decided_by {
        update = update
            .col_expr(C::DecideTime, Expr::value(now))
            .col_expr(C::DecidedBy, Expr::value(by.name()));
    }
    if let Some(reason) = decline_reason.filter(|reason| !reason.is_empty()) {
        update = update.col_expr(C::DeclineReason, Expr::value(reason));
    }
    let result = update
        .filter(C::RequestId.eq(read.request_id.as_str()))
        .filter(C::Version.eq(read.version))
        .filter(C::State.eq(RequestState::Pending.as_str()))
        .filter(C::ExpireTime.gt(now))
        .exec(tx)
        .await?;
    if result.rows_affected == 1 {
        return Ok(());
    }
    let current = load_request(tx, &read.request_id)
        .await?
        .ok_or_else(|| MembershipError::RequestNotFound(read.name()))?;
    Err(match current.state_at(now) {
        RequestState::Pending if etag_sent => MembershipError::StaleEtag(read.name()),
        RequestState::Pending => MembershipError::ConcurrentChange,
        state => MembershipError::NotPending {
            request: read.name(),
            state,
        },
    })
}

impl Store {
    /// The members of `account_id` with one of `roles`, ordered by user, at most `limit`.
    pub async fn members_with_roles(
        &self,
        account_id: &AccountId,
        roles: &[Role],
        limit: u64,
    ) -> Result<Vec<UserId>, MembershipError> {
        Ok(member::Entity::find()
            .filter(member::Column::AccountId.eq(account_id.as_str()))
            .filter(member::Column::Role.is_in(roles.iter().map(|role| role.as_str())))
            .order_by_asc(member::Column::UserId)
            .limit(limit)
            .all(self.connection()?)
            .await?
            .into_iter()
            .map(|row| UserId::trusted(row.user_id))
            .collect())
    }

    /// Stores the new `request` (PENDING, its one approval the requester's), who was asked to
    /// approve it and their e-mails, and publishes `access_request.created`. A PENDING request
    /// for the same subject is [`MembershipError::RequestPending`]; one that lapsed is closed
    /// (EXPIRED) first.
    pub async fn create_request(
        &self,
        request: &AccessRequest,
        approvers: &[UserId],
    ) -> Result<AccessRequest, MembershipError> {
        let tx = self.begin().await?;
        let now = request.create_time;
        access_request::Entity::update_many()
            .col_expr(
                access_request::Column::State,
                Expr::value(RequestState::Expired.as_str()),
            )
            .col_expr(
                access_request::Column::Version,
                Expr::col(access_request::Column::Version).add(1),
            )
            .filter(access_request::Column::AccountId.eq(request.account_id.as_str()))
            .filter(access_request::Column::SubjectUserId.eq(request.subject.as_str()))
            .filter(access_request::Column::State.eq(RequestState::Pending.as_str()))
            .filter(access_request::Column::ExpireTime.lte(now))
            .exec(&*tx)
            .await?;
        let row = access_request::ActiveModel {
            request_id: Set(request.request_id.clone()),
            account_id: Set(request.account_id.to_string()),
            subject_user_id: Set(request.subject.to_string()),
            subject_email: Set(request.subject_email.clone()),
            role: Set(request.role.as_str().to_string()),
            reason: Set(request.reason.clone()),
            access_duration_seconds: Set(request.access_duration.map(|d| d.num_seconds())),
            state: Set(RequestState::Pending.as_str().to_string()),
            requester: Set(request.requester.to_string()),
            required_approvals: Set(request.required_approvals),
            escalated: Set(request.escalated),
            create_time: Set(request.create_time),
            expire_time: Set(request.expire_time),
            decide_time: Set(None),
            decided_by: Set(None),
            decline_reason: Set(None),
            version: Set(1),
        };
        if let Err(error) = access_request::Entity::insert(row)
            .exec_without_returning(&*tx)
            .await
        {
            return Err(match StoreError::from(error) {
                StoreError::Conflict(_) => {
                    drop(tx);
                    self.pending_request_name(&request.account_id, &request.subject)
                        .await?
                        .map_or(
                            MembershipError::ConcurrentChange,
                            MembershipError::RequestPending,
                        )
                }
                other => MembershipError::Store(other),
            });
        }
        access_request_approval::Entity::insert(access_request_approval::ActiveModel {
            request_id: Set(request.request_id.clone()),
            approver: Set(request.requester.to_string()),
            approve_time: Set(now),
            // Operators never request.
            operator: Set(false),
        })
        .exec_without_returning(&*tx)
        .await?;
        if !approvers.is_empty() {
            access_request_approver::Entity::insert_many(approvers.iter().map(|user| {
                access_request_approver::ActiveModel {
                    user_id: Set(user.to_string()),
                    request_id: Set(request.request_id.clone()),
                    expire_time: Set(request.expire_time),
                }
            }))
            .exec_without_returning(&*tx)
            .await?;
        }
        queue_mails(&*tx, &request.request_id, MailKind::Waiting, approvers, now).await?;
        let stored = load_request(&*tx, &request.request_id)
            .await?
            .ok_or(MembershipError::ConcurrentChange)?;
        tx.append(&request_event(
            RequestChange::Created,
            &stored,
            None,
            &request.requester.name(),
            now,
        ))
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn pending_request_name(
        &self,
        account_id: &AccountId,
        subject: &UserId,
    ) -> Result<Option<String>, MembershipError> {
        Ok(access_request::Entity::find()
            .filter(access_request::Column::AccountId.eq(account_id.as_str()))
            .filter(access_request::Column::SubjectUserId.eq(subject.as_str()))
            .filter(access_request::Column::State.eq(RequestState::Pending.as_str()))
            .one(self.connection()?)
            .await?
            .map(|row| crate::domain::requests::request_name(account_id, &row.request_id)))
    }

    /// One request of `account_id`.
    pub async fn request(
        &self,
        account_id: &AccountId,
        request_id: &str,
    ) -> Result<Option<AccessRequest>, MembershipError> {
        Ok(load_request(self.connection()?, request_id)
            .await?
            .filter(|request| &request.account_id == account_id))
    }

    /// A page of `account_id`'s requests, newest first, after the cursor `after` (create time,
    /// request id), only those in `states` (all if empty) at `now`.
    pub async fn list_requests(
        &self,
        account_id: &AccountId,
        states: &[RequestState],
        after: Option<(DateTime<Utc>, String)>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<AccessRequest>, MembershipError> {
        use access_request::Column as C;
        let mut query = access_request::Entity::find().filter(C::AccountId.eq(account_id.as_str()));
        if !states.is_empty() {
            let mut any = Condition::any();
            for state in states {
                any = match state {
                    RequestState::Pending => any.add(
                        Condition::all()
                            .add(C::State.eq(RequestState::Pending.as_str()))
                            .add(C::ExpireTime.gt(now)),
                    ),
                    RequestState::Expired => {
                        any.add(C::State.eq(RequestState::Expired.as_str())).add(
                            Condition::all()
                                .add(C::State.eq(RequestState::Pending.as_str()))
                                .add(C::ExpireTime.lte(now)),
                        )
                    }
                    other => any.add(C::State.eq(other.as_str())),
                };
            }
            query = query.filter(any);
        }
        if let Some((time, id)) = after {
            query = query.filter(
                Condition::any().add(C::CreateTime.lt(time)).add(
                    Condition::all()
                        .add(C::CreateTime.eq(time))
                        .add(C::RequestId.lt(id)),
                ),
            );
        }
        let rows = query
            .order_by_desc(C::CreateTime)
            .order_by_desc(C::RequestId)
            .limit(limit)
            .all(self.connection()?)
            .await?;
        with_approvals(self.connection()?, rows).await
    }

    /// A page of the PENDING requests `user_id` was asked to approve and has not, soonest to
    /// lapse first, after the cursor `after` (lapse time, request id).
    pub async fn waiting_for(
        &self,
        user_id: &UserId,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> Result<Vec<AccessRequest>, MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let p = placeholders(backend, 5);
        let (after_time, after_id) = after.unwrap_or((now, String::new()));
        let sql = format!(
            "SELECT a.request_id FROM access_request_approvers a \
             JOIN access_requests r ON r.request_id = a.request_id \
             WHERE a.user_id = {0} AND r.state = 'PENDING' AND a.expire_time > {1} \
             AND (a.expire_time > {2} OR (a.expire_time = {2} AND a.request_id > {3})) \
             AND NOT EXISTS (SELECT 1 FROM access_request_approvals v \
               WHERE v.request_id = a.request_id AND v.approver = {0}) \
             ORDER BY a.expire_time, a.request_id LIMIT {4}",
            p[0], p[1], p[2], p[3], p[4]
        );
        let ids: Vec<String> = connection
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    user_id.as_str().into(),
                    now.into(),
                    after_time.into(),
                    after_id.into(),
                    (limit as i64).into(),
                ],
            ))
            .await?
            .into_iter()
            .map(|row| row.try_get_by_index::<String>(0))
            .collect::<Result<_, _>>()?;
        let rows = access_request::Entity::find()
            .filter(access_request::Column::RequestId.is_in(ids.iter().map(String::as_str)))
            .all(connection)
            .await?;
        let mut requests = with_approvals(connection, rows).await?;
        requests
            .sort_by(|a, b| (a.expire_time, &a.request_id).cmp(&(b.expire_time, &b.request_id)));
        Ok(requests)
    }

    /// Records `approver`'s approval (`as_operator`: given with the operator role) of `read` (as read and checked by the caller), and when it
    /// is the `last` one makes the grant: the subject's membership is added or changed in the
    /// same transaction (OWNER limit re-checked; a refused grant records nothing), with its
    /// `member.*` event, and the requester's e-mail is queued. A new OWNER is counted only
    /// while the account has fewer than `owner_ceiling` (the approver's own). Publishes
    /// `access_request.approved`. Returns the request after and the membership granted.
    pub async fn approve_request(
        &self,
        read: &AccessRequest,
        approver: &UserId,
        as_operator: bool,
        last: bool,
        owner_ceiling: i64,
        etag_sent: bool,
    ) -> Result<(AccessRequest, Option<Member>), MembershipError> {
        let tx = self.begin().await?;
        let now = tenantry_platform::time::now();
        let state = if last {
            RequestState::Approved
        } else {
            RequestState::Pending
        };
        decide(
            &*tx,
            read,
            state,
            last.then_some(approver),
            None,
            etag_sent,
            now,
        )
        .await?;
        access_request_approval::Entity::insert(access_request_approval::ActiveModel {
            request_id: Set(read.request_id.clone()),
            approver: Set(approver.to_string()),
            approve_time: Set(now),
            operator: Set(as_operator),
        })
        .exec_without_returning(&*tx)
        .await
        .map_err(|error| match StoreError::from(error) {
            StoreError::Conflict(_) => MembershipError::AlreadyApproved(read.name()),
            other => MembershipError::Store(other),
        })?;
        let actor = approver.name();
        let mut granted = None;
        if last {
            if replica::deleted_for_write(&*tx, &read.account_id).await? {
                return Err(MembershipError::AccountDeleted(read.account_id.to_string()));
            }
            let current = load_member(&*tx, &read.account_id, &read.subject).await?;
            let grant = grant_for(read, current, now)?;
            let (role, ends) = match &grant {
                Grant::Add(new) => (new.role, new.expire_time),
                Grant::Change {
                    role, expire_time, ..
                } => (*role, *expire_time),
            };
            if role == Role::Owner
                && ends.is_some()
                && super::owner_count(&*tx, &read.account_id).await? == 0
            {
                // It would be the account's only OWNER, who never expires.
                return Err(MembershipError::LastOwnerExpiry(
                    read.account_id.to_string(),
                ));
            }
            let member = match grant {
                Grant::Add(new) => {
                    insert_member(&*tx, &new, owner_ceiling).await.map_err(
                        |error| match error {
                            // Added a moment ago by another call: decide again on what is
                            // stored now (a change of that membership).
                            MembershipError::AlreadyMember { .. } => {
                                MembershipError::ConcurrentChange
                            }
                            other => other,
                        },
                    )?;
                    let member = load_member(&*tx, &new.account_id, &new.user_id)
                        .await?
                        .ok_or(MembershipError::ConcurrentChange)?;
                    tx.append(&member_event(MemberChange::Added, &member, &actor))
                        .await?;
                    member
                }
                Grant::Change {
                    current,
                    role,
                    expire_time,
                } => {
                    let changed = member::Entity::update_many()
                        .col_expr(member::Column::Role, Expr::value(role.as_str()))
                        .col_expr(member::Column::ExpireTime, Expr::value(expire_time))
                        .col_expr(member::Column::UpdateTime, Expr::value(now))
                        .col_expr(member::Column::Version, Expr::value(current.version + 1))
                        .filter(as_read(&current))
                        .exec(&*tx)
                        .await?;
                    if changed.rows_affected != 1 {
                        return Err(MembershipError::ConcurrentChange);
                    }
                    let delta = owners::owner_delta(Some(current.role), Some(role));
                    change_counts(&*tx, &read.account_id, delta, 0, owner_ceiling).await?;
                    let member = load_member(&*tx, &read.account_id, &read.subject)
                        .await?
                        .ok_or(MembershipError::ConcurrentChange)?;
                    let change = MemberChange::Updated {
                        previous_role: current.role,
                        previous_expire_time: current.expire_time,
                    };
                    tx.append(&member_event(change, &member, &actor)).await?;
                    member
                }
            };
            queue_mails(
                &*tx,
                &read.request_id,
                MailKind::Decided,
                std::slice::from_ref(&read.requester),
                now,
            )
            .await?;
            granted = Some(member);
        }
        let after = load_request(&*tx, &read.request_id)
            .await?
            .ok_or(MembershipError::ConcurrentChange)?;
        tx.append(&request_event(
            RequestChange::Approved,
            &after,
            Some(read),
            &actor,
            now,
        ))
        .await?;
        tx.commit().await?;
        Ok((after, granted))
    }

    /// Declines (`reason` told to the requester by e-mail) or cancels `read` by `actor`, if it
    /// is still PENDING at the version read. Publishes `access_request.declined` or
    /// `.cancelled`.
    pub async fn close_request(
        &self,
        read: &AccessRequest,
        change: RequestChange,
        actor: &UserId,
        reason: Option<&str>,
        etag_sent: bool,
    ) -> Result<AccessRequest, MembershipError> {
        let state = match change {
            RequestChange::Declined => RequestState::Declined,
            RequestChange::Cancelled => RequestState::Cancelled,
            RequestChange::Created | RequestChange::Approved => {
                return Err(MembershipError::Corrupt(format!(
                    "close_request({change:?})"
                )));
            }
        };
        let tx = self.begin().await?;
        let now = tenantry_platform::time::now();
        decide(&*tx, read, state, Some(actor), reason, etag_sent, now).await?;
        if change == RequestChange::Declined {
            queue_mails(
                &*tx,
                &read.request_id,
                MailKind::Decided,
                std::slice::from_ref(&read.requester),
                now,
            )
            .await?;
        }
        let after = load_request(&*tx, &read.request_id)
            .await?
            .ok_or(MembershipError::ConcurrentChange)?;
        tx.append(&request_event(
            change,
            &after,
            Some(read),
            &actor.name(),
            now,
        ))
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// A request by id alone (for the mailer).
    pub async fn request_by_id(
        &self,
        request_id: &str,
    ) -> Result<Option<AccessRequest>, MembershipError> {
        load_request(self.connection()?, request_id).await
    }
}
