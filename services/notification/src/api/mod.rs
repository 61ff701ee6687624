//! The gRPC handlers: authenticate, parse and validate, authorize through membership, check
//! recipients with the registry, call the store, map back.

pub mod convert;
pub mod errors;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tenantry_platform::authz::Authorizer;
use tenantry_platform::idempotency::{RequestKey, fingerprint, parse_request_id};
use tenantry_platform::names::parse_account;
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::time::{now, to_timestamp};
use tenantry_platform::{ApiError, Principal};
use tenantry_proto::membership::v1::Permission;
use tenantry_proto::notification::v1 as wire;
use tenantry_proto::notification::v1::notification_service_server::NotificationService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::{self, MAX_RECIPIENTS, NewMessage, NotificationError};
use crate::hub::{InboxHub, STREAM_BUFFER};
use crate::peers::{AccountState, Registry};
use crate::store::Store;
use crate::store::inbox::{decode_cursor, encode_cursor};
use crate::{Config, Deps};
use convert::{inbox_entry_to_wire, message_to_wire, parse_message_name, receipt_to_wire};
use errors::Failure;

const SEND_MESSAGE: &str = "SendMessage";

/// The notification service.
#[derive(Debug)]
pub struct NotificationApi {
    config: Config,
    store: Store,
    authorizer: Authorizer,
    registry: Registry,
    page_tokens: PageTokens,
    hub: InboxHub,
}

impl NotificationApi {
    /// The service over `deps`, pushing live inbox changes from `hub`.
    pub fn new(config: Config, deps: Deps, hub: InboxHub) -> Self {
        Self {
            store: Store::new(deps.database, deps.outbox),
            authorizer: deps.authorizer,
            registry: Registry::new(deps.registry),
            page_tokens: deps.page_tokens,
            hub,
            config,
        }
    }

    async fn send(
        &self,
        request: Request<wire::SendMessageRequest>,
    ) -> Result<wire::Message, Failure> {
        let principal = Principal::of(&request)?;
        let request = request.into_inner();
        let partner_id = parse_account("parent", &request.parent)?;
        let now = now();
        let mut violations: Vec<(String, String)> = Vec::new();
        let mut check = |field: &str, result: Result<String, String>| {
            result
                .map_err(|why| violations.push((field.to_string(), why)))
                .unwrap_or_default()
        };
        let title = check("title", domain::validate_title(&request.title));
        let body = check("body", domain::validate_body(&request.body));
        let read_policy = convert::read_policy_from_wire(request.read_policy)
            .map_err(|why| violations.push(("read_policy".into(), why)))
            .ok();
        let roles = convert::roles_from_wire(&request.roles)
            .map_err(|why| violations.push(("roles".into(), why)))
            .unwrap_or_default();
        let requested_expiry = match &request.expire_time {
            Some(timestamp) => Some(convert::time_from_wire("expire_time", timestamp)?),
            None => None,
        };
        let expire_time = domain::validate_expiry(requested_expiry, now)
            .map_err(|why| violations.push(("expire_time".into(), why)))
            .unwrap_or_default();
        let mut requested = Vec::new();
        let given_list = !request.recipients.is_empty();
        if request.all_customers == given_list {
            violations.push((
                "recipients".into(),
                "give exactly one of recipients (1 to 1000 accounts) or all_customers".into(),
            ));
        } else if request.recipients.len() > MAX_RECIPIENTS {
            violations.push((
                "recipients".into(),
                format!("at most {MAX_RECIPIENTS} accounts"),
            ));
        } else {
            let mut seen = HashSet::new();
            for (index, name) in request.recipients.iter().enumerate() {
                match parse_account(&format!("recipients[{index}]"), name) {
                    Ok(id) => {
                        if seen.insert(id.clone()) {
                            requested.push((index, id));
                        }
                    }
                    Err(_) => violations.push((
                        format!("recipients[{index}]"),
                        "must be a customer `accounts/{customer_id}` managed by parent".into(),
                    )),
                }
            }
        }
        let Some(read_policy) = read_policy.filter(|_| violations.is_empty()) else {
            return Err(ApiError::invalid_fields(violations).into());
        };
        let request_id = parse_request_id("request_id", &request.request_id)?;

        self.authorizer
            .require(&principal, &partner_id, Permission::MessagesSend)
            .await?;

        let key = request_id.map(|request_id| {
            let roles: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
            let recipients: Vec<&str> = requested.iter().map(|(_, id)| id.as_str()).collect();
            RequestKey {
                request_id,
                caller: principal.resource_name(),
                method: SEND_MESSAGE.to_string(),
                fingerprint: fingerprint(&[
                    SEND_MESSAGE,
                    &partner_id,
                    &title,
                    &body,
                    read_policy.as_str(),
                    &recipients.join(","),
                    if request.all_customers { "all" } else { "" },
                    &roles.join(","),
                    &requested_expiry
                        .map(|time| time.to_rfc3339())
                        .unwrap_or_default(),
                ]),
            }
        });
        if let Some(key) = &key
            && let Some(earlier) = self.store.find_request(&key.request_id).await?
        {
            key.check_retry_of(&earlier.key)
                .map_err(|_| NotificationError::RequestIdReused)?;
            if let Some(view) = self.store.view(&earlier.message_id).await? {
                return Ok(message_to_wire(&view, now));
            }
        }

        let partner = self.registry.account(&partner_id).await?;
        let partner_display_name = match partner {
            Some(facts) if facts.partner && facts.state == AccountState::Active => {
                facts.display_name
            }
            _ => return Err(NotificationError::NotActivePartner(partner_id).into()),
        };
        let customers: HashMap<String, AccountState> = self
            .registry
            .customers(&partner_id)
            .await?
            .into_iter()
            .collect();
        let recipients = if request.all_customers {
            let mut active: Vec<String> = customers
                .iter()
                .filter(|(_, state)| **state == AccountState::Active)
                .map(|(id, _)| id.clone())
                .collect();
            active.sort();
            if active.is_empty() {
                return Err(NotificationError::NoActiveCustomers(partner_id).into());
            }
            active
        } else {
            self.check_recipients(&partner_id, &requested, &customers)
                .await?
        };
        let new = NewMessage {
            partner_id,
            partner_display_name,
            sender: principal.resource_name(),
            title,
            body,
            read_policy,
            recipients,
            all_customers: request.all_customers,
            roles,
            expire_time,
        };
        let view = self.store.send(&new, key.as_ref(), now).await?;
        Ok(message_to_wire(&view, now))
    }

    /// Every requested recipient must be an ACTIVE customer of the partner: others are
    /// INVALID_ARGUMENT naming `recipients[i]` (same answer whether the account exists or
    /// not); customers that are not ACTIVE (disabled, deleted) are FAILED_PRECONDITION.
    async fn check_recipients(
        &self,
        partner_id: &str,
        requested: &[(usize, String)],
        customers: &HashMap<String, AccountState>,
    ) -> Result<Vec<String>, Failure> {
        let mut invalid = Vec::new();
        let mut not_active = Vec::new();
        for (index, id) in requested {
            match customers.get(id) {
                Some(AccountState::Active) => {}
                Some(_) => not_active.push(id.clone()),
                None => {
                    // Deleted customers are not listed: ask for the account itself.
                    match self.registry.account(id).await? {
                        Some(facts) if facts.managed_by.as_deref() == Some(partner_id) => {
                            not_active.push(id.clone())
                        }
                        _ => invalid.push((
                            format!("recipients[{index}]"),
                            "must be a customer `accounts/{customer_id}` managed by parent"
                                .to_string(),
                        )),
                    }
                }
            }
        }
        if !invalid.is_empty() {
            return Err(ApiError::invalid_fields(invalid).into());
        }
        if !not_active.is_empty() {
            return Err(NotificationError::RecipientsNotActive(not_active).into());
        }
        Ok(requested.iter().map(|(_, id)| id.clone()).collect())
    }

    async fn list_messages(
        &self,
        request: Request<wire::ListMessagesRequest>,
    ) -> Result<wire::ListMessagesResponse, Failure> {
        let principal = Principal::of(&request)?;
        let request = request.into_inner();
        let partner_id = parse_account("parent", &request.parent)?;
        let scope = format!("ListMessages|{partner_id}");
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        self.authorizer
            .require(&principal, &partner_id, Permission::MessagesList)
            .await?;
        let mut views = self
            .store
            .list_views(&partner_id, page.after.as_deref(), page.size + 1)
            .await?;
        let next_page_token = self.page_tokens.finish(&scope, &page, &mut views, |view| {
            view.message.message_id.clone()
        });
        let now = now();
        Ok(wire::ListMessagesResponse {
            messages: views
                .iter()
                .map(|view| message_to_wire(view, now))
                .collect(),
            next_page_token,
        })
    }

    /// The message `name` for a caller allowed to read the partner's messages.
    async fn authorized_view(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<domain::MessageView, Failure> {
        let (partner_id, message_id) = parse_message_name("name", name)?;
        self.authorizer
            .require(principal, &partner_id, Permission::MessagesList)
            .await?;
        Ok(self
            .store
            .view(&message_id)
            .await?
            .filter(|view| view.message.partner_id == partner_id)
            .ok_or_else(|| NotificationError::NotFound(name.to_string()))?)
    }

    async fn get_message(
        &self,
        request: Request<wire::GetMessageRequest>,
    ) -> Result<wire::Message, Failure> {
        let principal = Principal::of(&request)?;
        let view = self
            .authorized_view(&principal, &request.get_ref().name)
            .await?;
        Ok(message_to_wire(&view, now()))
    }

    async fn list_receipts(
        &self,
        request: Request<wire::ListMessageReceiptsRequest>,
    ) -> Result<wire::ListMessageReceiptsResponse, Failure> {
        let principal = Principal::of(&request)?;
        let request = request.into_inner();
        let (partner_id, message_id) = parse_message_name("name", &request.name)?;
        let scope = format!("ListMessageReceipts|{partner_id}|{message_id}");
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let after = match page.after.as_deref() {
            Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                ApiError::invalid_field("page_token", "not a page token issued for this query")
            })?),
            None => None,
        };
        self.authorized_view(&principal, &request.name).await?;
        let mut receipts = self
            .store
            .receipts(&message_id, after, page.size + 1)
            .await?;
        let next_page_token = self
            .page_tokens
            .finish(&scope, &page, &mut receipts, |(seq, _)| seq.to_string());
        Ok(wire::ListMessageReceiptsResponse {
            receipts: receipts
                .iter()
                .map(|(_, receipt)| receipt_to_wire(receipt))
                .collect(),
            next_page_token,
        })
    }

    async fn list_pending(
        &self,
        request: Request<wire::ListPendingMessagesRequest>,
    ) -> Result<wire::ListPendingMessagesResponse, Failure> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        let request = request.get_ref();
        let scope = format!("ListPendingMessages|{}", user.sub);
        let page = self
            .page_tokens
            .request(&scope, request.page_size, &request.page_token)?;
        let after = match page.after.as_deref() {
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
                ApiError::invalid_field("page_token", "not a page token issued for this query")
            })?),
            None => None,
        };
        let mut entries = self
            .store
            .pending_inbox(&user.sub, after.as_ref(), page.size + 1, now())
            .await?;
        let next_page_token = self
            .page_tokens
            .finish(&scope, &page, &mut entries, encode_cursor);
        Ok(wire::ListPendingMessagesResponse {
            items: entries.iter().map(inbox_entry_to_wire).collect(),
            next_page_token,
        })
    }

    async fn acknowledge(
        &self,
        request: Request<wire::AcknowledgeMessageRequest>,
    ) -> Result<wire::AcknowledgeMessageResponse, Failure> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        let name = &request.get_ref().name;
        let (partner_id, message_id) = parse_message_name("name", name)?;
        let outcome = self
            .store
            .acknowledge(&user.sub, &partner_id, &message_id, now())
            .await?;
        let names = |ids: &[String]| {
            ids.iter()
                .map(|id| tenantry_platform::names::account_name(id))
                .collect()
        };
        Ok(wire::AcknowledgeMessageResponse {
            message: convert::message_name(&partner_id, &message_id),
            acknowledge_time: outcome.acknowledge_time.map(to_timestamp),
            acknowledged_accounts: names(&outcome.acknowledged_accounts),
            already_resolved_accounts: names(&outcome.already_resolved_accounts),
        })
    }

    async fn watch(
        &self,
        request: Request<wire::WatchInboxRequest>,
    ) -> Result<WatchInboxStream, Failure> {
        let principal = Principal::of(&request)?;
        let user = principal.user()?;
        // Register first: a change between the snapshot read and the registration would
        // otherwise be lost (a duplicate `arrived` is harmless: clients upsert).
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let registration = self.hub.register(&user.sub, sender);
        let max = u64::from(self.config.max_inbox_snapshot.max(1));
        let mut items = self
            .store
            .pending_inbox(&user.sub, None, max + 1, now())
            .await?;
        let truncated = items.len() as u64 > max;
        items.truncate(max as usize);
        let snapshot = wire::WatchInboxResponse {
            event: Some(wire::watch_inbox_response::Event::Snapshot(
                wire::InboxSnapshot {
                    items: items.iter().map(inbox_entry_to_wire).collect(),
                    truncated,
                },
            )),
        };
        let live = ReceiverStream::new(receiver).map(move |change| {
            // The registration lives as long as the stream: the client going away drops it.
            let _registration = &registration;
            change
        });
        Ok(Box::pin(
            futures::stream::once(async { Ok(snapshot) }).chain(live),
        ))
    }
}

/// The WatchInbox response stream.
pub type WatchInboxStream =
    Pin<Box<dyn Stream<Item = Result<wire::WatchInboxResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn send_message(
        &self,
        request: Request<wire::SendMessageRequest>,
    ) -> Result<Response<wire::SendMessageResponse>, Status> {
        let message = self.send(request).await?;
        Ok(Response::new(wire::SendMessageResponse {
            message: Some(message),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<wire::ListMessagesRequest>,
    ) -> Result<Response<wire::ListMessagesResponse>, Status> {
        Ok(Response::new(
            NotificationApi::list_messages(self, request).await?,
        ))
    }

    async fn get_message(
        &self,
        request: Request<wire::GetMessageRequest>,
    ) -> Result<Response<wire::GetMessageResponse>, Status> {
        let message = NotificationApi::get_message(self, request).await?;
        Ok(Response::new(wire::GetMessageResponse {
            message: Some(message),
        }))
    }

    async fn list_message_receipts(
        &self,
        request: Request<wire::ListMessageReceiptsRequest>,
    ) -> Result<Response<wire::ListMessageReceiptsResponse>, Status> {
        Ok(Response::new(self.list_receipts(request).await?))
    }

    async fn list_pending_messages(
        &self,
        request: Request<wire::ListPendingMessagesRequest>,
    ) -> Result<Response<wire::ListPendingMessagesResponse>, Status> {
        Ok(Response::new(self.list_pending(request).await?))
    }

    async fn acknowledge_message(
        &self,
        request: Request<wire::AcknowledgeMessageRequest>,
    ) -> Result<Response<wire::AcknowledgeMessageResponse>, Status> {
        Ok(Response::new(self.acknowledge(request).await?))
    }

    type WatchInboxStream = WatchInboxStream;

    async fn watch_inbox(
        &self,
        request: Request<wire::WatchInboxRequest>,
    ) -> Result<Response<Self::WatchInboxStream>, Status> {
        Ok(Response::new(self.watch(request).await?))
    }
}
