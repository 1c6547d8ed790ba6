//! Page tokens of the list RPCs: opaque to callers, they carry the last
//! position seen plus the filters of the call, so that a token reused with
//! other filters is refused instead of silently returning a wrong page.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::error::{Error, Result};

/// A token for the page after `cursor` under `filter`.
pub fn encode(cursor: &str, filter: &str) -> String {
    B64.encode(format!("v1|{cursor}|{filter}"))
}

/// The cursor of `token`, if it was issued for `filter`; `what` names the
/// filters in the error.
pub fn decode(token: &str, filter: &str, what: &str) -> Result<String> {
    let bad = || Error::invalid("page_token", "is not a token returned by a previous call");
    let raw = B64.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = text.strip_prefix("v1|").ok_or_else(bad)?;
    let (cursor, f) = rest.split_once('|').ok_or_else(bad)?;
    if f != filter {
        return Err(Error::invalid(
            "page_token",
            format!("was issued for different filters ({what})"),
        ));
    }
    Ok(cursor.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_filters() {
        let t = encode("42", "a|b");
        assert_eq!(decode(&t, "a|b", "x").expect("valid"), "42");
        assert!(decode(&t, "a|c", "x").is_err());
        assert!(decode("garbage!", "", "x").is_err());
        assert!(decode(&B64.encode("v2|1|"), "", "x").is_err());
    }
}
