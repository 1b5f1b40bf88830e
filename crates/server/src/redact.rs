//! Passwords out of what is printed: `scheme://user:password@host` becomes
//! `scheme://user:***@host` wherever it appears in a text (a URL on its own,
//! or inside an error message that quotes one).

/// `text` with the password of every URL in it replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends where the URL's path, query or fragment starts,
        // or where the URL itself ends in the text.
        let end = after
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>' | ')' | ','
                    )
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                    out.push_str(&authority[at..]);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_what_is_printed() {
        assert_eq!(
            redact("postgres://baton:s3cret@db:5432/baton"),
            "postgres://baton:***@db:5432/baton"
        );
        assert_eq!(
            redact("postgres://baton@db/baton"),
            "postgres://baton@db/baton"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("disk"), "disk");
        assert_eq!(
            redact(
                "opening the state store (postgres://u:p%40ss@h/db): error connecting to postgres://u:p%40ss@h/db, then redis://:pw@r:1"
            ),
            "opening the state store (postgres://u:***@h/db): error connecting to postgres://u:***@h/db, then redis://:***@r:1"
        );
        // A password with `@` in it (not escaped) still goes: the last `@` ends it.
        assert_eq!(redact("nats://a:b@c@host:4222"), "nats://a:***@host:4222");
    }
}
