//! The gRPC handlers: authenticate, parse, apply the domain's rules (authorizing through
//! membership, checking recipients with the registry), call the store, map back.

pub mod errors;

use std::collections::HashMap;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tenantry_platform::authz::Authorizer;
use tenantry_platform::idempotency::parse_request_id;
use tenantry_platform::pagination::PageTokens;
use tenantry_platform::time::{now, to_timestamp};
use tenantry_platform::{AccountId, ApiError, Principal, UserId};
use tenantry_proto::membership::v1::Permission;
use tenantry_proto::notification::v1 as wire;
use tenantry_proto::notification::v1::notification_service_server::NotificationService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::{self, AccountState, NewMessage, NotificationError, Recipients, SendDraft};
use crate::hub::{InboxHub, STREAM_BUFFER};
use crate::peers::Registry;
use crate::store::Store;
use crate::store::inbox::{decode_cursor, encode_cursor};
use crate::wire::{
    inbox_entry_to_wire, message_name, message_to_wire, parse_message_name, read_policy_from_wire,
    receipt_to_wire, roles_from_wire, time_from_wire,
};
use crate::{Config, Deps};
use errors::Failure;

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
        let partner_id = AccountId::from_name("parent", &request.parent)?;
        let now = now();
        let expire_time = match &request.expire_time {
            Some(timestamp) => Some(time_from_wire("expire_time", timestamp)?),
            None => None,
        };
        let input = domain::SendInput {
            title: &request.title,
            body: &request.body,
            read_policy: read_policy_from_wire(request.read_policy),
            roles: roles_from_wire(&request.roles),
            expire_time,
            recipients: &request.recipients,
            all_customers: request.all_customers,
        };
        let draft = domain::check_send(input, now)?;
        let request_id = parse_request_id("request_id", &request.request_id)?;

        self.authorizer
            .require(&principal, &partner_id, Permission::MessagesSend)
            .await?;
        let sender = principal.resource_name();
        let key = request_id.map(|id| draft.request_key(id, sender.clone(), &partner_id));
        if let Some(key) = &key
            && let Some(view) = self.store.replay(key).await?
        {
            return Ok(message_to_wire(&view, now));
        }
        let new = self.addressed(partner_id, draft, sender).await?;
        let view = self.store.send(&new, key.as_ref(), now).await?;
        Ok(message_to_wire(&view, now))
    }

    /// The message `draft` becomes once the registry confirmed the sender (an ACTIVE partner)
    /// and resolved its recipients (see [`domain::listed_recipients`]): one registry call for
    /// listed recipients (the partner and the recipients in one BatchGetAccounts), the partner
    /// and its customer list for all of them.
    async fn addressed(
        &self,
        partner_id: AccountId,
        draft: SendDraft,
        sender: String,
    ) -> Result<NewMessage, Failure> {
        let (display_name, recipients) = match &draft.recipients {
            Recipients::AllCustomers => {
                let partner = self.registry.account(&partner_id).await?;
                let display_name = domain::sending_partner(&partner_id, partner)?;
                let customers: HashMap<AccountId, AccountState> = self
                    .registry
                    .customers(&partner_id)
                    .await?
                    .into_iter()
                    .collect();
                let recipients = domain::all_active_customers(&partner_id, &customers)?;
                (display_name, recipients)
            }
            Recipients::Listed(requested) => {
                let ids: Vec<AccountId> = std::iter::once(partner_id.clone())
                    .chain(requested.iter().map(|(_, id)| id.clone()))
                    .collect();
                let mut accounts = self.registry.accounts(&ids).await?;
                let partner = accounts.get(&partner_id).cloned();
                let display_name = domain::sending_partner(&partner_id, partner)?;
                // The partner itself is no recipient (it manages no account of its own).
                accounts.remove(&partner_id);
                let recipients = domain::listed_recipients(&partner_id, requested, &accounts)?;
                (display_name, recipients)
            }
        };
        Ok(draft.into_message(partner_id, display_name, sender, recipients))
    }

    async fn list_messages(
        &self,
        request: Request<wire::ListMessagesRequest>,
    ) -> Result<wire::ListMessagesResponse, Failure> {
        let principal = Principal::of(&request)?;
        let request = request.into_inner();
        let partner_id = AccountId::from_name("parent", &request.parent)?;
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
        let user_id = UserId::trusted(user.sub.clone());
        let scope = format!("ListPendingMessages|{user_id}");
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
            .pending_inbox(&user_id, after.as_ref(), page.size + 1, now())
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
        let user_id = UserId::trusted(user.sub.clone());
        let (partner_id, message_id) = parse_message_name("name", name)?;
        let outcome = self
            .store
            .acknowledge(&user_id, &partner_id, &message_id, now())
            .await?;
        let names = |ids: &[AccountId]| ids.iter().map(AccountId::name).collect();
        Ok(wire::AcknowledgeMessageResponse {
            message: message_name(&partner_id, &message_id),
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
        let user_id = UserId::trusted(user.sub.clone());
        let registration = self.hub.register(&user_id, sender);
        let max = u64::from(self.config.max_inbox_snapshot.max(1));
        let mut items = self
            .store
            .pending_inbox(&user_id, None, max + 1, now())
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
