//! What UpdateAccount may change: only the display name. The account identifier can never
//! change, whether asked through the update mask or through a different `account_id`.

use super::AccountId;

/// The only path an update mask may name.
pub const DISPLAY_NAME_PATH: &str = "display_name";

/// Why each path of an update mask other than [`DISPLAY_NAME_PATH`] cannot be updated, in the
/// mask's order.
pub fn refused_paths(paths: &[String]) -> impl Iterator<Item = String> + '_ {
    paths
        .iter()
        .filter(|path| *path != DISPLAY_NAME_PATH)
        .map(|path| {
            if path == "account_id" || path == "name" {
                format!(
                    "`{path}` cannot be updated: the account identifier can never be changed; \
                     only `display_name` may be updated"
                )
            } else {
                format!("`{path}` cannot be updated; only `display_name` may be updated")
            }
        })
}

/// Whether an update with these mask paths changes the display name: an empty mask means the
/// display name; a mask without it named only paths [`refused_paths`] refuses.
pub fn updates_display_name(paths: &[String]) -> bool {
    paths.is_empty() || paths.iter().any(|path| path == DISPLAY_NAME_PATH)
}

/// The `account_id` an update sent must be empty or the id of the account it names: the
/// identifier can never be changed. The error describes the refusal.
pub fn check_id_unchanged(id: &AccountId, sent: &str) -> Result<(), String> {
    if sent.is_empty() || id == sent {
        Ok(())
    } else {
        Err(format!(
            "must be empty or equal the id in `account.name` (`{id}`): the account identifier \
             can never be changed"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|path| path.to_string()).collect()
    }

    #[test]
    fn only_the_display_name_may_be_updated() {
        assert!(updates_display_name(&paths(&[])));
        assert!(updates_display_name(&paths(&["display_name"])));
        assert!(!updates_display_name(&paths(&["partner"])));
        assert_eq!(refused_paths(&paths(&["display_name"])).count(), 0);
        let refused: Vec<_> =
            refused_paths(&paths(&["partner", "display_name", "account_id", "name"])).collect();
        assert_eq!(refused.len(), 3);
        assert!(refused[0].starts_with("`partner` cannot be updated; only"));
        assert!(refused[1].contains("can never be changed"));
        assert!(refused[2].starts_with("`name` cannot be updated: the account identifier"));
    }

    #[test]
    fn the_identifier_never_changes() {
        let id = AccountId::trusted("acme");
        assert!(check_id_unchanged(&id, "").is_ok());
        assert!(check_id_unchanged(&id, "acme").is_ok());
        let refusal = check_id_unchanged(&id, "other").unwrap_err();
        assert!(refusal.contains("(`acme`)"), "{refusal}");
    }
}
