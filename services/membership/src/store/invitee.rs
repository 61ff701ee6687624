//! What CheckInvitee asks of the database, in one statement: the account's OWNER count (its
//! counter row) and whether a member's directory e-mail is the invitee's. One round trip
//! instead of the four statements `owner_count` and `list_members` take.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tenantry_platform::AccountId;

use super::Store;
use crate::domain::MembershipError;

/// What the database says about an invitee of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InviteeFacts {
    /// The account's OWNERs (0 for an account membership does not know).
    pub owners: i64,
    /// Whether a member of the account has the e-mail (normalized) in the directory.
    pub email_is_member: bool,
}

impl Store {
    /// The account's OWNER count and whether one of its members has the normalized `email`.
    pub async fn invitee(
        &self,
        account_id: &AccountId,
        email: &str,
    ) -> Result<InviteeFacts, MembershipError> {
        let connection = self.connection()?;
        let backend = connection.get_database_backend();
        let [account, account_again, address] = match backend {
            DbBackend::Postgres => ["$1", "$2", "$3"],
            _ => ["?", "?", "?"],
        };
        let sql = format!(
            "SELECT COALESCE((SELECT owners FROM account_member_counts \
             WHERE account_id = {account}), 0) AS owners, \
             EXISTS (SELECT 1 FROM members JOIN users ON users.user_id = members.user_id \
             WHERE members.account_id = {account_again} AND users.email_normalized = {address} \
             AND members.expire_time IS NULL) \
             AS email_is_member"
        );
        let row = connection
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    account_id.as_str().into(),
                    account_id.as_str().into(),
                    email.into(),
                ],
            ))
            .await?
            .ok_or_else(|| {
                MembershipError::Corrupt("CheckInvitee's query returned no row".into())
            })?;
        Ok(InviteeFacts {
            owners: row.try_get("", "owners")?,
            email_is_member: row.try_get("", "email_is_member")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use tenantry_events::Outbox;
    use tenantry_platform::UserId;
    use tenantry_platform::db::Database;
    use tenantry_platform::testing::{TempDatabase, TempPostgres};

    use super::*;
    use crate::domain::owners::MAX_OWNERS;
    use crate::domain::{MemberSource, NewMember, Role, UserProfile};
    use crate::store::migrations::Migrator;

    /// `acme` with an OWNER whose directory e-mail is Olga@Example.com and an EMPLOYEE with
    /// none; someone outside the account has eve@example.com.
    async fn answers(database: &Database) {
        let store = Store::new(database.clone(), Outbox::new());
        for (user, role) in [("olga", Role::Owner), ("ed", Role::Employee)] {
            store
                .add_member(
                    &NewMember {
                        account_id: AccountId::trusted("acme"),
                        user_id: UserId::trusted(user),
                        role,
                        source: MemberSource::Direct,
                        added_by: "users/operator".into(),
                        expire_time: None,
                    },
                    MAX_OWNERS,
                    None,
                )
                .await
                .unwrap();
        }
        for (user, email) in [("olga", "Olga@Example.com"), ("eve", "eve@example.com")] {
            let profile = UserProfile {
                email: email.into(),
                given_name: String::new(),
                family_name: String::new(),
            };
            store
                .upsert_user(&UserId::trusted(user), &profile)
                .await
                .unwrap();
        }
        let acme = AccountId::trusted("acme");
        let facts = |owners, email_is_member| InviteeFacts {
            owners,
            email_is_member,
        };
        assert_eq!(
            store.invitee(&acme, "olga@example.com").await.unwrap(),
            facts(1, true)
        );
        assert_eq!(
            store.invitee(&acme, "eve@example.com").await.unwrap(),
            facts(1, false),
            "eve is in the directory but not a member"
        );
        assert_eq!(
            store
                .invitee(&AccountId::trusted("unknown"), "olga@example.com")
                .await
                .unwrap(),
            facts(0, false)
        );
    }

    #[tokio::test]
    async fn answers_on_sqlite() {
        let temp = TempDatabase::new::<Migrator>("membership-invitee-store").await;
        answers(&temp.database).await;
    }

    #[tokio::test]
    async fn answers_on_postgres() {
        let Some(temp) = TempPostgres::create("membership_invitee").await else {
            return;
        };
        let database = temp.database();
        database.connect_and_migrate::<Migrator>().await.unwrap();
        answers(&database).await;
    }
}
