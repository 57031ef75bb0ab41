//! Secrets in settings: `env:NAME` and `file:PATH` references resolved, and passwords kept
//! out of everything preheat prints (URLs shown redacted, driver messages scrubbed).

/// Resolves `env:NAME` and `file:PATH` references; anything else is returned as is.
pub fn resolve_secret(value: &str) -> Result<String, String> {
    if let Some(name) = value.strip_prefix("env:") {
        return std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"));
    }
    if let Some(path) = value.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read `{path}`: {e}"));
    }
    Ok(value.to_string())
}

/// A URL with its password replaced by `***` (`postgres://app:***@db/shop`).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_string() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else { return url.to_string() };
    let userinfo = &authority[..at];
    let redacted = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None if !userinfo.is_empty() && url.starts_with("redis") => "***".to_string(),
        None => userinfo.to_string(),
    };
    format!("{}://{}{}", &url[..scheme_end], redacted, &rest[at..])
}

/// Removes every occurrence of the password of `url` from `text` (driver messages sometimes
/// quote the connection string).
pub fn scrub(text: &str, url: &str) -> String {
    let password = url
        .find("://")
        .map(|i| &url[i + 3..])
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(p, "***"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/shop"), "postgres://app:***@db:5432/shop");
        assert_eq!(redact_url("redis://:s3cret@cache:6379/0"), "redis://:***@cache:6379/0");
        assert_eq!(redact_url("sqlite://data/shop.db"), "sqlite://data/shop.db");
        assert_eq!(redact_url("postgres://app@db/shop"), "postgres://app@db/shop");
        assert_eq!(
            scrub("failed for postgres://app:s3cret@db", "postgres://app:s3cret@db/x"),
            "failed for postgres://app:***@db"
        );
    }

    #[test]
    fn secrets_from_env_and_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("url");
        std::fs::write(&path, "sqlite://x.db\n").expect("writable");
        assert_eq!(resolve_secret(&format!("file:{}", path.display())).expect("read"), "sqlite://x.db");
        assert!(resolve_secret("env:PREHEAT_TEST_SURELY_UNSET").unwrap_err().contains("is not set"));
        assert_eq!(resolve_secret("sqlite://y.db").expect("plain"), "sqlite://y.db");
    }
}
