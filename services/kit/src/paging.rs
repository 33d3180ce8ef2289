//! Cursor pagination shared by every list call: a page token is the opaque form of the last key
//! returned, so that pages stay stable while rows are added.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::FieldViolation;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// A decoded page request: rows after `after`, at most `size` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub after: Option<String>,
    pub size: u32,
}

impl Cursor {
    /// From the wire form (`page.page_size`, `page.page_token`); a size of 0 means the default
    /// and a larger one than the maximum is capped.
    pub fn parse(page_size: u32, page_token: &str) -> Result<Self, FieldViolation> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            let bytes = URL_SAFE_NO_PAD.decode(page_token).map_err(|_| {
                FieldViolation::new("page.page_token", "not a token this service issued")
            })?;
            Some(String::from_utf8(bytes).map_err(|_| {
                FieldViolation::new("page.page_token", "not a token this service issued")
            })?)
        };
        Ok(Self { after, size })
    }

    /// The token of the page after `items`, empty when `items` did not fill this page.
    pub fn next_token<T>(&self, items: &[T], key: impl Fn(&T) -> &str) -> String {
        self.next_token_by(items, |item| key(item).to_string())
    }

    /// [`Cursor::next_token`] for a key made from several fields (`id@version`).
    pub fn next_token_by<T>(&self, items: &[T], key: impl Fn(&T) -> String) -> String {
        match items.last() {
            Some(last) if items.len() as u32 >= self.size => URL_SAFE_NO_PAD.encode(key(last)),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_leads_to_the_rows_after_the_last_one() {
        let first = Cursor::parse(2, "").unwrap();
        assert_eq!(first.after, None);
        let token = first.next_token(&["a", "b"], |s| s);
        let second = Cursor::parse(2, &token).unwrap();
        assert_eq!(second.after.as_deref(), Some("b"));
        assert_eq!(
            second.next_token(&["c"], |s| s),
            "",
            "a short page is the last"
        );
    }

    #[test]
    fn sizes_default_and_cap_and_bad_tokens_name_the_field() {
        assert_eq!(Cursor::parse(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(Cursor::parse(10_000, "").unwrap().size, MAX_PAGE_SIZE);
        assert_eq!(
            Cursor::parse(5, "***").unwrap_err().field,
            "page.page_token"
        );
    }
}
