//! Secret settings, from the environment or from a file.
//!
//! Every secret setting `TENANTRY_X` can instead be given as `TENANTRY_X_FILE`, the path of a
//! file holding the value (the convention of official container images): a Kubernetes Secret or
//! a secret store's volume (Vault agent, the Secrets Store CSI driver) mounted as files, so the
//! value is in neither the pod spec nor the process environment. One trailing line break is
//! dropped. Setting both is refused, as is an unreadable or empty file. Values are never logged:
//! errors name the setting and the file, never the content.

/// Every secret setting; each also reads `{name}_FILE`.
pub const SECRET_SETTINGS: [&str; 9] = [
    "TENANTRY_INTERNAL_SECRET",
    "TENANTRY_INTERNAL_SECRET_PREVIOUS",
    "TENANTRY_JWT_SECRET",
    "TENANTRY_DATABASE_URL",
    "TENANTRY_AMQP_URL",
    "TENANTRY_SMTP_URL",
    "TENANTRY_OIDC_CLIENT_SECRET",
    "TENANTRY_AUDIT_TOMBSTONE_KEY",
    "TENANTRY_AUDIT_TOMBSTONE_KEY_PREVIOUS",
];

/// Why a secret setting could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretFileError {
    /// Both the setting and its `_FILE` twin are set.
    #[error("{name} and {name}_FILE are both set; set one of them")]
    Both {
        /// The setting.
        name: String,
    },
    /// The file named by `_FILE` cannot be read.
    #[error("{name}_FILE: cannot read {path}: {reason}")]
    Unreadable {
        /// The setting.
        name: String,
        /// The file.
        path: String,
        /// What the operating system said.
        reason: String,
    },
    /// The file is empty (or only a line break).
    #[error("{name}_FILE: {path} is empty")]
    Empty {
        /// The setting.
        name: String,
        /// The file.
        path: String,
    },
}

/// The value of secret setting `name` as `var` (the environment in production) gives it:
/// `name` itself, or the content of the file `{name}_FILE` names. `None` when neither is set.
pub fn lookup(
    name: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, SecretFileError> {
    let direct = var(name).filter(|value| !value.is_empty());
    let file = var(&format!("{name}_FILE")).filter(|path| !path.trim().is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(SecretFileError::Both {
            name: name.to_string(),
        }),
        (Some(value), None) => Ok(Some(value)),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let content =
                std::fs::read_to_string(&path).map_err(|error| SecretFileError::Unreadable {
                    name: name.to_string(),
                    path: path.clone(),
                    reason: error.kind().to_string(),
                })?;
            let value = content
                .strip_suffix('\n')
                .map(|value| value.strip_suffix('\r').unwrap_or(value))
                .unwrap_or(&content);
            if value.is_empty() {
                return Err(SecretFileError::Empty {
                    name: name.to_string(),
                    path,
                });
            }
            Ok(Some(value.to_string()))
        }
    }
}

/// [`lookup`] in the process environment; `None` on an error as well (startup checks every
/// secret setting with [`check_environment`] first, so no error goes unreported).
pub fn from_env(name: &str) -> Option<String> {
    lookup(name, |name| std::env::var(name).ok()).ok().flatten()
}

/// Every secret setting of the process environment that cannot be read, in [`SECRET_SETTINGS`]
/// order (empty when all are fine).
pub fn check_environment() -> Vec<SecretFileError> {
    SECRET_SETTINGS
        .iter()
        .filter_map(|name| lookup(name, |name| std::env::var(name).ok()).err())
        .collect()
}

/// `command` with every argument whose environment variable is a secret setting given only as
/// `{name}_FILE` defaulting to the file's content (hidden from `--help`), so clap's own reading
/// of the environment sees it. Call after [`check_environment`] found nothing wrong.
pub fn defaults_from_files(command: clap::Command) -> clap::Command {
    let secret_args: Vec<(String, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?;
            // An empty variable counts as unset, as in `lookup`: the file's value is used.
            let set = std::env::var_os(env).is_some_and(|value| !value.is_empty());
            if !SECRET_SETTINGS.contains(&env) || set {
                return None;
            }
            Some((arg.get_id().to_string(), from_env(env)?))
        })
        .collect();
    let mut command = command;
    for (id, value) in secret_args {
        // clap keeps defaults as `'static` text (without its `string` feature): one small
        // string per secret setting, once per process.
        let value: &'static str = Box::leak(value.into_boxed_str());
        command = command.mut_arg(id, |arg| {
            // A default does not satisfy a required argument in clap (`--database-url`): the
            // file's value does, so the argument is no longer required. Nor may an empty
            // variable of the same name win over the file, as clap's environment would.
            arg.env(None::<&'static str>)
                .default_value(value)
                .required(false)
                .hide_default_value(true)
                .hide_env_values(true)
        });
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|subcommand| subcommand.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, defaults_from_files);
    }
    command
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn the_value_comes_from_the_variable_or_the_file_without_its_line_break() {
        let dir = std::env::temp_dir().join(format!("tenantry-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("secret");
        std::fs::write(&file, "s3cret\r\n").expect("write");
        let path = file.to_string_lossy().to_string();
        let name = "TENANTRY_INTERNAL_SECRET";
        assert_eq!(
            lookup(name, env(&[(name, "direct")])),
            Ok(Some("direct".into()))
        );
        assert_eq!(
            lookup(name, env(&[("TENANTRY_INTERNAL_SECRET_FILE", &path)])),
            Ok(Some("s3cret".into()))
        );
        assert_eq!(lookup(name, env(&[])), Ok(None));
        assert!(matches!(
            lookup(
                name,
                env(&[(name, "x"), ("TENANTRY_INTERNAL_SECRET_FILE", &path)])
            ),
            Err(SecretFileError::Both { .. })
        ));
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(
            lookup(name, env(&[("TENANTRY_INTERNAL_SECRET_FILE", &path)])),
            Err(SecretFileError::Empty { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("clean up");
        let missing = lookup(name, env(&[("TENANTRY_INTERNAL_SECRET_FILE", &path)]));
        let Err(error @ SecretFileError::Unreadable { .. }) = missing else {
            panic!("{missing:?}");
        };
        assert!(
            error.to_string().contains("TENANTRY_INTERNAL_SECRET_FILE"),
            "{error}"
        );
    }
}
