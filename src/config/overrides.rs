//! Settings given as flags or `PREHEAT_*` environment variables, applied over the file.
//!
//! Precedence, highest first: a flag, its environment variable, the config file, the built-in
//! default. The command line resolves a flag against its variable; what is set here replaces
//! the file's value after the same checks the file gets.

use super::warm::{parse_age, parse_deadline, parse_memory_limit};
use super::{Config, ConfigError};

/// Values from flags or the environment; `None` leaves the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--backend` / `PREHEAT_BACKEND`: the backend URL.
    pub backend: Option<String>,
    /// `--deadline` / `PREHEAT_DEADLINE`.
    pub deadline: Option<String>,
    /// `--max-keys` / `PREHEAT_MAX_KEYS`.
    pub max_keys: Option<u64>,
    /// `--max-memory` / `PREHEAT_MAX_MEMORY`.
    pub max_memory: Option<String>,
    /// `--max-profile-age` / `PREHEAT_MAX_PROFILE_AGE`.
    pub max_profile_age: Option<String>,
}

fn invalid(setting: &str, message: String) -> ConfigError {
    ConfigError::Override { setting: setting.to_string(), message }
}

impl Config {
    /// Applies `overrides`; the first invalid one is an error naming its flag and variable.
    pub fn apply(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        if let Some(url) = &overrides.backend {
            self.backend.url = url.clone();
        }
        if let Some(d) = &overrides.deadline {
            self.warm.deadline =
                parse_deadline(d).map_err(|m| invalid("--deadline / PREHEAT_DEADLINE", m))?;
        }
        if let Some(n) = overrides.max_keys {
            if n == 0 {
                return Err(invalid("--max-keys / PREHEAT_MAX_KEYS", "must be at least 1".into()));
            }
            self.warm.budgets.max_keys = n;
        }
        if let Some(m) = &overrides.max_memory {
            self.warm.max_memory = parse_memory_limit(m)
                .map_err(|why| invalid("--max-memory / PREHEAT_MAX_MEMORY", format!("`{m}` {why}")))?;
        }
        if let Some(a) = &overrides.max_profile_age {
            self.warm.max_profile_age =
                Some(parse_age(a).map_err(|m| invalid("--max-profile-age / PREHEAT_MAX_PROFILE_AGE", m))?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::MemoryLimit;

    const FILE: &str =
        "[warm]\ndeadline = \"4m\"\nmax_keys = 10\n[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\n";

    #[test]
    fn overrides_replace_the_file_and_are_checked_alike() {
        let mut c = Config::parse(FILE, "t.toml").expect("valid");
        c.apply(&Overrides::default()).expect("nothing to apply");
        assert_eq!((c.warm.deadline, c.warm.budgets.max_keys), (Duration::from_secs(240), 10));
        let o = Overrides {
            backend: Some("redis://cache:6379".into()),
            deadline: Some("90s".into()),
            max_keys: Some(500),
            max_memory: Some("20%".into()),
            max_profile_age: Some("2d".into()),
        };
        c.apply(&o).expect("valid overrides");
        assert_eq!(c.backend.url, "redis://cache:6379");
        assert_eq!(c.warm.deadline, Duration::from_secs(90));
        assert_eq!(c.warm.budgets.max_keys, 500);
        assert_eq!(c.warm.max_memory, MemoryLimit::Share(0.2));
        assert_eq!(c.warm.max_profile_age, Some(Duration::from_secs(2 * 86400)));

        let err = c.apply(&Overrides { deadline: Some("10m".into()), ..Overrides::default() }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--deadline / PREHEAT_DEADLINE: `10m` is longer than the 5m a warm may take"
        );
        let err = c.apply(&Overrides { max_memory: Some("90%".into()), ..Overrides::default() }).unwrap_err();
        assert!(err.to_string().contains("at most 50%"), "{err}");
        assert!(c.apply(&Overrides { max_keys: Some(0), ..Overrides::default() }).is_err());
    }
}
