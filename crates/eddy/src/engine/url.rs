//! The one redaction of engine URLs: every URL eddy shows (messages, logs,
//! `describe()`, the CLI's output) goes through [`redact_url`].

/// Query parameters whose value is a secret (compared after percent-decoding,
/// case-insensitively): `pass`/`password` as the redis crate reads them on
/// unix sockets, and the spellings a user or a planned scheme may add.
fn is_secret_param(key: &str) -> bool {
    let key = percent_decode(key).to_ascii_lowercase();
    key.contains("pass") || key.contains("secret") || key.contains("token") || key == "auth"
}

/// `url` with every secret replaced by `***`: the password of the user info
/// (`user:***@`; user info without a colon is all secret, `***@`, since
/// `redis://SECRET@host` is how many write a password) and the value of
/// every `pass=`, `password=` (any case) or similar query parameter. Knows
/// `memory://`, `redis://`, `rediss://`, `redis+unix://`, `unix://` and the
/// host-list schemes `redis+cluster://`, `rediss+cluster://`,
/// `redis+sentinel://`, `rediss+sentinel://`; anything else, even text that
/// is not a URL, is redacted by the same rules. When in doubt (an `@` or `?`
/// inside a password), more is hidden, never less.
///
/// ```
/// use eddy::engine::redact_url;
/// assert_eq!(redact_url("redis://u:pw@h:6379/0"), "redis://u:***@h:6379/0");
/// assert_eq!(
///     redact_url("redis+unix:///run/redis.sock?db=1&pass=pw"),
///     "redis+unix:///run/redis.sock?db=1&pass=***"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let lower = scheme.to_ascii_lowercase();
    let socket = lower == "redis+unix://" || lower == "unix://";
    // Where the user info ends. A password may hold `/`, `?` or `#`
    // unescaped, so on host schemes the last `@` anywhere counts (an `@` in
    // a query value then hides a little too much). A socket URL's path may
    // hold `@`, and its authority is normally empty.
    let at = if socket {
        if rest.starts_with('/') {
            None
        } else {
            rest[..rest.find('?').unwrap_or(rest.len())].rfind('@')
        }
    } else {
        rest.rfind('@')
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    let tail = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _)) if !user.contains(['@', ',', '/', '?']) => {
                    out.push_str(user);
                    out.push_str(":***@");
                }
                _ => out.push_str("***@"),
            }
            &rest[at + 1..]
        }
        None => rest,
    };
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            out.push_str(&redact_query(query));
        }
        None => out.push_str(tail),
    }
    out
}

/// A query string with secret values replaced. A secret value runs to the
/// next `&`, `#` included: the user may have meant it as part of the value.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_param(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `%XX` escapes and `+` decoded, lossily: only to recognise a key.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    fn no_secret(url: &str) -> String {
        let shown = redact_url(url);
        assert!(!shown.contains("SECRET"), "{url} shown as {shown}");
        shown
    }

    #[test]
    fn tcp_user_info() {
        assert_eq!(no_secret("redis://u:SECRET@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(no_secret("redis://:SECRET@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(no_secret("redis://SECRET@h:1/0"), "redis://***@h:1/0");
        assert_eq!(
            no_secret("rediss://u:SECRET@h:1/0#insecure"),
            "rediss://u:***@h:1/0#insecure"
        );
        assert_eq!(no_secret("REDIS://u:SECRET@h"), "REDIS://u:***@h");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            redact_url("rediss://h:1/0#insecure"),
            "rediss://h:1/0#insecure"
        );
        assert_eq!(redact_url("memory://"), "memory://");
        assert_eq!(redact_url("memory://?history=30s"), "memory://?history=30s");
    }

    #[test]
    fn awkward_passwords_hide_more_never_less() {
        for url in [
            "redis://u:SE/CRET@h:1/0",
            "redis://u:SE?CRET@h:1/0",
            "redis://u:SE#CRET@h:1/0",
            "redis://u:SE@CRET@h:1/0",
            "redis://:SE%40CRET@h",
            "redis://u:SECRET@h:1/0?protocol=resp3",
        ] {
            let shown = no_secret(url);
            assert!(shown.starts_with("redis://"), "{shown}");
            assert!(shown.contains("@h"), "{shown}");
        }
        assert_eq!(no_secret("redis://u:SE@CRET@h"), "redis://u:***@h");
        // A user name cannot itself hold what looks like user info.
        assert_eq!(no_secret("redis://a@b:SECRET@h"), "redis://***@h");
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            no_secret("redis+unix:///tmp/r.sock?pass=SECRET"),
            "redis+unix:///tmp/r.sock?pass=***"
        );
        assert_eq!(
            no_secret("unix:///tmp/r.sock?db=2&user=u&password=SECRET&protocol=resp3"),
            "unix:///tmp/r.sock?db=2&user=u&password=***&protocol=resp3"
        );
        assert_eq!(
            no_secret("redis+unix:///s?PASS=SECRET"),
            "redis+unix:///s?PASS=***"
        );
        assert_eq!(
            no_secret("redis+unix:///s?Password=SECRET"),
            "redis+unix:///s?Password=***"
        );
        assert_eq!(
            no_secret("redis+unix:///s?p%61ss=SECRET"),
            "redis+unix:///s?p%61ss=***"
        );
        assert_eq!(
            no_secret("redis+unix:///s?pass=SE#CRET&db=1"),
            "redis+unix:///s?pass=***&db=1"
        );
        assert_eq!(
            no_secret("redis://h:1/0?password=SECRET"),
            "redis://h:1/0?password=***"
        );
        assert_eq!(
            no_secret("memory://?history=1s&pass=SECRET"),
            "memory://?history=1s&pass=***"
        );
        assert_eq!(
            redact_url("redis+unix:///tmp/r.sock?db=1&user=u"),
            "redis+unix:///tmp/r.sock?db=1&user=u"
        );
    }

    #[test]
    fn socket_paths_keep_their_at_signs() {
        assert_eq!(
            no_secret("redis+unix:///tmp/a@b.sock?pass=SECRET"),
            "redis+unix:///tmp/a@b.sock?pass=***"
        );
        assert_eq!(
            no_secret("redis+unix://u:SECRET@/tmp/r.sock"),
            "redis+unix://u:***@/tmp/r.sock"
        );
        assert_eq!(
            no_secret("unix://SECRET@/tmp/r.sock"),
            "unix://***@/tmp/r.sock"
        );
    }

    #[test]
    fn host_lists() {
        assert_eq!(
            no_secret("redis+cluster://:SECRET@h1:1,h2:2,h3:3"),
            "redis+cluster://:***@h1:1,h2:2,h3:3"
        );
        assert_eq!(
            no_secret("rediss+cluster://u:SECRET@h1:1,h2:2?password=SECRET"),
            "rediss+cluster://u:***@h1:1,h2:2?password=***"
        );
        assert_eq!(
            no_secret("redis+sentinel://u:SECRET@s1:26379,s2:26379/mymaster/0"),
            "redis+sentinel://u:***@s1:26379,s2:26379/mymaster/0"
        );
        assert_eq!(
            no_secret("rediss+sentinel://s1:1,s2:2/m?sentinel_password=SECRET&password=SECRET"),
            "rediss+sentinel://s1:1,s2:2/m?sentinel_password=***&password=***"
        );
        // Credentials per host: everything up to the last one is hidden.
        assert_eq!(
            no_secret("redis+cluster://:SECRET@h1:1,:SECRET@h2:2"),
            "redis+cluster://:***@h2:2"
        );
        assert_eq!(
            no_secret("redis+cluster://u:SECRET@h1:1,u:SECRET@h2:2"),
            "redis+cluster://u:***@h2:2"
        );
    }

    #[test]
    fn not_urls() {
        assert_eq!(no_secret("u:SECRET@h:1"), "u:***@h:1");
        assert_eq!(no_secret("SECRET@h"), "***@h");
        assert_eq!(no_secret("bogus://x?pass=SECRET"), "bogus://x?pass=***");
        assert_eq!(redact_url(""), "");
        assert_eq!(redact_url("memory"), "memory");
    }
}
