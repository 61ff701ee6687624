//! Transaction-scoped locks on a key that need no row: PostgreSQL advisory locks in their
//! two-key form, the first key naming what is locked (a [`KeyLock`] class) and the second the
//! server's `hashtext` of the key, so every replica computes the same lock.
//!
//! Used where a write must serialize with a change of something that may not have a row yet:
//! a row lock (`FOR SHARE`) does that only while the row exists. An advisory lock lives only in
//! the lock manager, is held until the transaction ends, and costs a statement of its own.
//! Keys whose hashes collide merely share a lock. SQLite serializes transactions, so there
//! both calls do nothing.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

/// A kind of lock, named once (e.g. `"registry.account"`): its class is the name's hash, so
/// two kinds never share locks unless their names are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLock {
    class: i32,
}

impl KeyLock {
    /// The lock kind `name`.
    pub const fn named(name: &str) -> Self {
        // 32-bit FNV-1a of the name.
        let bytes = name.as_bytes();
        let mut hash: u32 = 0x811c_9dc5;
        let mut index = 0;
        while index < bytes.len() {
            hash ^= bytes[index] as u32;
            hash = hash.wrapping_mul(0x0100_0193);
            index += 1;
        }
        Self { class: hash as i32 }
    }

    /// Takes the lock on `key` shared: other shared holders go ahead, an exclusive holder is
    /// waited for (and waits for this transaction).
    pub async fn shared(&self, conn: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
        self.take(
            conn,
            key,
            "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
        )
        .await
    }

    /// Takes the lock on `key` exclusively, waiting for every holder's transaction to end.
    pub async fn exclusive(&self, conn: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
        self.take(conn, key, "SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .await
    }

    async fn take(
        &self,
        conn: &impl ConnectionTrait,
        key: &str,
        sql: &'static str,
    ) -> Result<(), DbErr> {
        let backend = conn.get_database_backend();
        if backend != DbBackend::Postgres {
            return Ok(());
        }
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [self.class.into(), key.into()],
        ))
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_stable_and_distinct() {
        // FNV-1a of "" is the offset basis; a renamed kind would silently stop meeting its
        // other holders across a rolling upgrade, so the values are pinned.
        assert_eq!(KeyLock::named("").class, 0x811c_9dc5_u32 as i32);
        assert_eq!(KeyLock::named("a").class, 0xe40c_292c_u32 as i32);
        assert_ne!(
            KeyLock::named("registry.account"),
            KeyLock::named("membership.account")
        );
    }
}
