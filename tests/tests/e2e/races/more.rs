//! The races on membership and messages: single-read acknowledgements, AddMyself, and the
//! contested second OWNER seat (every loser would have been a third OWNER).

use super::*;
use tenantry_e2e::send_message;

/// Members of one customer acknowledge one SINGLE_READ_ONLY message at once: one resolver,
/// one receipt, one `message.resolved`; every other answer says "already resolved". In other
/// rounds one member acknowledges a message from every connection at once (a double-click
/// storm, on either read policy): every answer is that member's one acknowledgement, recorded
/// once.
pub async fn single_read_acknowledgements(cluster: &TestCluster) {
    let racers = Racers::connect(cluster).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, &fresh_id("partner"), "alice").await;
    let alice = &partner.owner;
    let customer = create_customer(cluster, alice, &partner.account.name, &fresh_id("cust"))
        .await
        .expect("customer");
    let readers: Vec<TestUser> = (0..RACERS)
        .map(|n| TestUser::new(&format!("reader{n}")))
        .collect();
    for reader in &readers {
        add_member(cluster, &operator, &customer.name, reader, Role::Employee)
            .await
            .expect("add reader");
    }
    let tables = Tables::of(cluster, ServiceKind::Notification).await;
    let mut events = cluster
        .subscribe_events(&["message.resolved", "message.acknowledged"])
        .await;
    for round in 0..ROUNDS {
        let same_reader = round % 2 == 1;
        let policy = if round == 3 {
            ReadPolicy::AllMustRead
        } else {
            ReadPolicy::SingleReadOnly
        };
        let title = format!("Read me once, round {round}");
        let message = send_message(
            cluster,
            alice,
            &partner.account.name,
            &[&customer.name],
            &title,
            policy,
        )
        .await
        .expect("send");
        wait_delivered(cluster, alice, &message.name).await;
        let answers = racers
            .race(|racer| {
                let reader = if same_reader {
                    &readers[0]
                } else {
                    &readers[racer]
                };
                let mut client = racers.notification(racer, reader);
                let request = AcknowledgeMessageRequest {
                    name: message.name.clone(),
                };
                async move {
                    client
                        .acknowledge_message(request)
                        .await
                        .map(|response| response.into_inner())
                }
            })
            .await;
        let what = format!("round {round}: acknowledge {}", message.name);
        let answers: Vec<AcknowledgeMessageResponse> = answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|status| panic!("{what}: {status:?}")))
            .collect();
        let counted: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter(|(_, answer)| answer.acknowledged_accounts == vec![customer.name.clone()])
            .map(|(racer, _)| racer)
            .collect();
        let resolver = if same_reader {
            // Every retry of one reader's acknowledgement reports that acknowledgement.
            assert_eq!(counted.len(), RACERS, "{what}: {answers:?}");
            let times: Vec<_> = answers.iter().map(|a| a.acknowledge_time).collect();
            assert!(times[0].is_some(), "{what}");
            assert!(times.iter().all(|t| *t == times[0]), "{what}: {times:?}");
            &readers[0]
        } else {
            assert_eq!(counted.len(), 1, "{what}: one resolver: {answers:?}");
            for (racer, answer) in answers.iter().enumerate() {
                if racer != counted[0] {
                    assert_eq!(
                        answer.already_resolved_accounts,
                        vec![customer.name.clone()]
                    );
                    assert!(answer.acknowledge_time.is_none(), "{what}: {answer:?}");
                }
            }
            &readers[counted[0]]
        };
        let stored = cluster
            .notification_as(alice)
            .get_message(GetMessageRequest {
                name: message.name.clone(),
            })
            .await
            .expect("get message")
            .into_inner()
            .message
            .expect("message");
        let single_read = policy == ReadPolicy::SingleReadOnly;
        let stats = &stored.stats[0];
        assert_eq!(stats.resolved, single_read, "{what}");
        if single_read {
            assert_eq!(stats.resolved_by, resolver.resource_name(), "{what}");
        }
        assert_eq!(stats.acknowledged_count, 1, "{what}");
        let receipts = cluster
            .notification_as(alice)
            .list_message_receipts(ListMessageReceiptsRequest {
                name: message.name.clone(),
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .expect("receipts")
            .into_inner()
            .receipts;
        assert_eq!(receipts.len(), 1, "{what}: {receipts:?}");
        assert_eq!(receipts[0].user, resolver.resource_name());
        let message_id = &stored.message_id;
        let deliveries = |state: &str| {
            format!(
                "SELECT COUNT(*) FROM deliveries WHERE message_id = '{message_id}' \
                 AND state = '{state}'"
            )
        };
        assert_eq!(tables.count(&deliveries("ACKNOWLEDGED")).await, 1, "{what}");
        let still_pending = if single_read { 0 } else { RACERS as i64 - 1 };
        assert_eq!(
            tables.count(&deliveries("PENDING")).await,
            still_pending,
            "{what}"
        );
        assert_eq!(
            tables
                .count(&format!(
                    "SELECT COUNT(*) FROM receipts WHERE message_id = '{message_id}'"
                ))
                .await,
            1,
            "{what}"
        );
        let seen = published(&mut events, &[&tables]).await;
        assert_eq!(
            count_events(&seen, "message.resolved", &message.name),
            usize::from(single_read),
            "{what}"
        );
        assert_eq!(
            count_events(&seen, "message.acknowledged", &message.name),
            1,
            "{what}"
        );
    }
    tables.close().await;
}

async fn wait_delivered(cluster: &TestCluster, sender: &TestUser, message: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = cluster
            .notification_as(sender)
            .get_message(GetMessageRequest {
                name: message.to_string(),
            })
            .await
            .expect("get message")
            .into_inner()
            .message
            .expect("message")
            .state;
        if state == MessageState::Delivered as i32 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fan-out of {message} never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One partner admin presses "Add Myself" on one customer from every connection at once: every
/// answer is the same membership, exactly one says it created it, one row, one `member.added`.
pub async fn add_myself(cluster: &TestCluster) {
    let racers = Racers::connect(cluster).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, &fresh_id("partner"), "alice").await;
    let alice = &partner.owner;
    let tables = Tables::of(cluster, ServiceKind::Membership).await;
    let mut events = cluster.subscribe_events(&["member.added"]).await;
    for round in 0..ROUNDS {
        let customer = create_customer(cluster, alice, &partner.account.name, &fresh_id("cust"))
            .await
            .expect("customer");
        let answers = racers
            .race(|racer| {
                let mut client = racers.membership(racer, alice);
                let request = AddMyselfRequest {
                    account: customer.name.clone(),
                    ..Default::default()
                };
                async move {
                    client
                        .add_myself(request)
                        .await
                        .map(|response| response.into_inner())
                }
            })
            .await;
        let what = format!("round {round}: AddMyself {}", customer.name);
        let answers: Vec<_> = answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|status| panic!("{what}: {status:?}")))
            .collect();
        assert_eq!(
            answers.iter().filter(|answer| answer.created).count(),
            1,
            "{what}: exactly one call created it"
        );
        let members: Vec<Member> = answers
            .into_iter()
            .map(|answer| answer.member.expect("member"))
            .collect();
        assert!(
            members.iter().all(|member| member.name == members[0].name
                && member.etag == members[0].etag
                && member.role == Role::Admin as i32
                && member.source == MemberSource::SelfAssigned as i32),
            "{what}: {members:?}"
        );
        let listed = all_members(cluster, alice, &customer.name, &[]).await;
        assert_eq!(listed.len(), 1, "{what}: {listed:?}");
        let account_id = &customer.account_id;
        assert_eq!(
            tables
                .count(&format!(
                    "SELECT COUNT(*) FROM members WHERE account_id = '{account_id}'"
                ))
                .await,
            1,
            "{what}"
        );
        assert_eq!(
            tables
                .count(&format!(
                    "SELECT members FROM account_member_counts WHERE account_id = '{account_id}'"
                ))
                .await,
            1,
            "{what}: the member counter moved once"
        );
        let seen = published(&mut events, &[&tables]).await;
        assert_eq!(
            count_events(&seen, "member.added", &members[0].name),
            1,
            "{what}"
        );
    }
    tables.close().await;
}

/// An account with one OWNER; every racer tries to take the second (and last) OWNER seat at
/// once — new members added as OWNER, and in alternate rounds existing ADMINs promoted. One
/// wins; every other grant would have made a third OWNER: FAILED_PRECONDITION OWNER_LIMIT,
/// with nothing written.
pub async fn contested_owner_seat(cluster: &TestCluster) {
    let racers = Racers::connect(cluster).await;
    let operator = TestUser::operator("ops");
    let partner = partner_with_owner(cluster, &operator, &fresh_id("partner"), "alice").await;
    let tables = Tables::of(cluster, ServiceKind::Membership).await;
    let mut events = cluster
        .subscribe_events(&["member.added", "member.updated"])
        .await;
    for round in 0..ROUNDS {
        let promote = round % 2 == 1;
        let customer = create_customer(
            cluster,
            &partner.owner,
            &partner.account.name,
            &fresh_id("cust"),
        )
        .await
        .expect("customer");
        let first_owner = TestUser::new("owner");
        add_member(
            cluster,
            &operator,
            &customer.name,
            &first_owner,
            Role::Owner,
        )
        .await
        .expect("the first OWNER");
        let candidates: Vec<TestUser> = (0..RACERS)
            .map(|n| TestUser::new(&format!("candidate{n}")))
            .collect();
        if promote {
            for candidate in &candidates {
                add_member(cluster, &operator, &customer.name, candidate, Role::Admin)
                    .await
                    .expect("add an ADMIN");
            }
        }
        let _ = published(&mut events, &[&tables]).await;
        // The first OWNER grants, each racer on its own connection.
        let answers = racers
            .race(|racer| {
                let mut client = racers.membership(racer, &first_owner);
                let candidate = candidates[racer].resource_name();
                let parent = customer.name.clone();
                async move {
                    if promote {
                        let name = format!("{parent}/members/{}", &candidate["users/".len()..]);
                        client
                            .update_member(UpdateMemberRequest {
                                member: Some(Member {
                                    name,
                                    role: Role::Owner as i32,
                                    ..Default::default()
                                }),
                                update_mask: Some(prost_types::FieldMask {
                                    paths: vec!["role".into()],
                                }),
                            })
                            .await
                            .map(|response| response.into_inner().member.expect("member"))
                    } else {
                        client
                            .add_member(AddMemberRequest {
                                parent,
                                principal: Some(add_member_request::Principal::User(candidate)),
                                role: Role::Owner as i32,
                                source: 0,
                                request_id: String::new(),
                                invitee_profile: None,
                            })
                            .await
                            .map(|response| response.into_inner().member.expect("member"))
                    }
                }
            })
            .await;
        let what = format!(
            "round {round}: {} OWNER {}",
            if promote { "promote to" } else { "add as" },
            customer.name
        );
        let (winner, member) =
            single_winner(&what, answers, Code::FailedPrecondition, "OWNER_LIMIT");
        assert_eq!(member.user, candidates[winner].resource_name(), "{what}");
        let owners: Vec<String> = all_members(cluster, &operator, &customer.name, &[Role::Owner])
            .await
            .into_iter()
            .map(|member| member.user)
            .collect();
        let mut expected = vec![first_owner.resource_name(), member.user.clone()];
        expected.sort();
        assert_eq!(owners, expected, "{what}");
        let account_id = &customer.account_id;
        let expected_members = if promote { 1 + RACERS } else { 2 } as i64;
        assert_eq!(
            tables
                .count(&format!(
                    "SELECT COUNT(*) FROM members WHERE account_id = '{account_id}'"
                ))
                .await,
            expected_members,
            "{what}: no member row of a loser"
        );
        assert_eq!(
            tables
                .count(&format!(
                    "SELECT COUNT(*) FROM members WHERE account_id = '{account_id}' \
                     AND role = 'OWNER'"
                ))
                .await,
            2,
            "{what}"
        );
        assert_eq!(
            tables
                .count(&format!(
                    "SELECT owners * 100000 + members FROM account_member_counts \
                     WHERE account_id = '{account_id}'"
                ))
                .await,
            2 * 100_000 + expected_members,
            "{what}: the counters match the rows"
        );
        let seen = published(&mut events, &[&tables]).await;
        let event_type = if promote {
            "member.updated"
        } else {
            "member.added"
        };
        assert_eq!(
            count_events(&seen, event_type, &format!("{}/members/", customer.name)),
            1,
            "{what}: one {event_type}"
        );
    }
    tables.close().await;
}
