//! Path templates of `google.api.http` rules:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! Verb     = ":" LITERAL ;
//! ```

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Single,
    /// `**`: the rest of the path (last segment only).
    Rest,
}

/// A variable: the field it sets and the segments it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field_path: String,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("path template `{template}`: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let fail = |reason: &str| TemplateError {
            template: template.to_string(),
            reason: reason.to_string(),
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| fail("must start with /"))?;
        // The verb follows the last `:` that is outside braces.
        let mut depth = 0;
        let mut verb_at = None;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        let (path, verb) = match verb_at {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_string())),
            None => (rest, None),
        };
        let mut segments = Vec::new();
        let mut variables = Vec::new();
        let mut chars = path.split('/').peekable();
        while let Some(part) = chars.next() {
            if let Some(inner) = part.strip_prefix('{') {
                // A variable may span several `/`-separated parts: `{name=shelves/*/books/*}`.
                let mut body = inner.to_string();
                while !body.ends_with('}') {
                    let next = chars.next().ok_or_else(|| fail("unclosed {"))?;
                    body.push('/');
                    body.push_str(next);
                }
                body.pop();
                let (field_path, pattern) = match body.split_once('=') {
                    Some((f, p)) => (f.to_string(), p.to_string()),
                    None => (body.clone(), "*".to_string()),
                };
                if field_path.is_empty() {
                    return Err(fail("variable without a field"));
                }
                let start = segments.len();
                for p in pattern.split('/') {
                    segments.push(parse_segment(p).ok_or_else(|| fail("bad segment in variable"))?);
                }
                variables.push(Variable {
                    field_path,
                    start,
                    end: segments.len(),
                });
            } else {
                segments.push(parse_segment(part).ok_or_else(|| fail("bad segment"))?);
            }
        }
        if let Some(i) = segments.iter().position(|s| *s == Segment::Rest)
            && i + 1 != segments.len()
        {
            return Err(fail("** must be the last segment"));
        }
        Ok(Self {
            source: template.to_string(),
            segments,
            variables,
            verb,
        })
    }

    /// The field paths this template binds.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| v.field_path.as_str())
    }

    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// The template in OpenAPI's form: `/api/v1/tenants/{tenant}/plans/{id}:submit`.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.segments.len() {
            out.push('/');
            if let Some(v) = self.variables.iter().find(|v| v.start == i) {
                out.push('{');
                out.push_str(&v.field_path);
                out.push('}');
                i = v.end.max(i + 1);
                continue;
            }
            match &self.segments[i] {
                Segment::Literal(l) => out.push_str(l),
                Segment::Single => out.push('*'),
                Segment::Rest => out.push_str("**"),
            }
            i += 1;
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    /// Matches a request path (without query); returns each variable's field path and value,
    /// percent-decoded.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        self.bind(&RequestPath::new(path)?)
    }

    /// The last part of `path` with the verb stripped, when `path` has this template's shape.
    fn last_part<'p>(&self, path: &RequestPath<'p>) -> Option<&'p str> {
        let parts = &path.parts;
        let last = *parts.last()?;
        let last = match &self.verb {
            Some(verb) => last.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => last,
        };
        // Each segment takes one part, except a final `**`, which takes the rest (maybe none).
        let fixed = match self.segments.last() {
            Some(Segment::Rest) => self.segments.len() - 1,
            _ => self.segments.len(),
        };
        let counted = if fixed < self.segments.len() {
            parts.len() >= fixed
        } else {
            parts.len() == fixed
        };
        if !counted {
            return None;
        }
        let part = |i: usize| if i + 1 == parts.len() { last } else { parts[i] };
        let fits = self.segments[..fixed]
            .iter()
            .enumerate()
            .all(|(i, segment)| match segment {
                Segment::Literal(l) => part(i) == l,
                Segment::Single => !part(i).is_empty(),
                Segment::Rest => false,
            });
        fits.then_some(last)
    }

    /// How many `/`-separated parts a path of this template has: exactly that many, or with a
    /// final `**`, at least that many.
    pub fn parts(&self) -> PartCount {
        match self.segments.last() {
            Some(Segment::Rest) => PartCount::AtLeast(self.segments.len() - 1),
            _ => PartCount::Exactly(self.segments.len()),
        }
    }

    /// Whether `path` has this template's shape (literals, segment count, verb).
    pub fn fits(&self, path: &RequestPath<'_>) -> bool {
        self.last_part(path).is_some()
    }

    /// Like [`Self::matches`], on a path split once for all the templates it is tried against.
    pub fn bind(&self, path: &RequestPath<'_>) -> Option<Vec<(String, String)>> {
        let last = self.last_part(path)?;
        let parts = &path.parts;
        let part = |i: usize| if i + 1 == parts.len() { last } else { parts[i] };
        let ends_in_rest = matches!(self.segments.last(), Some(Segment::Rest));
        let mut out = Vec::with_capacity(self.variables.len());
        for v in &self.variables {
            let to = if ends_in_rest && v.end == self.segments.len() {
                parts.len()
            } else {
                v.end
            };
            let mut raw = String::new();
            for i in v.start..to {
                if i > v.start {
                    raw.push('/');
                }
                raw.push_str(part(i));
            }
            out.push((v.field_path.clone(), percent_decode(&raw)?));
        }
        Some(out)
    }
}

/// The number of parts a template's paths have (see [`PathTemplate::parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartCount {
    Exactly(usize),
    AtLeast(usize),
}

/// A request path split at `/` once, to be tried against every route's template.
#[derive(Debug)]
pub struct RequestPath<'a> {
    parts: Vec<&'a str>,
}

impl<'a> RequestPath<'a> {
    /// `None` unless the path starts with `/`.
    pub fn new(path: &'a str) -> Option<Self> {
        Some(Self {
            parts: path.strip_prefix('/')?.split('/').collect(),
        })
    }

    /// Its number of `/`-separated parts.
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }
}

fn parse_segment(s: &str) -> Option<Segment> {
    match s {
        "*" => Some(Segment::Single),
        "**" => Some(Segment::Rest),
        "" => None,
        l if l.contains(['{', '}', '=']) => None,
        l => Some(Segment::Literal(l.to_string())),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn simple_variables_and_verbs() {
        let t = PathTemplate::parse("/api/v1/tenants/{tenant}/plans/{id}:submit").unwrap();
        assert_eq!(
            t.matches("/api/v1/tenants/230100/plans/p-1:submit"),
            vars(&[("tenant", "230100"), ("id", "p-1")])
        );
        assert_eq!(t.matches("/api/v1/tenants/230100/plans/p-1"), None);
        assert_eq!(t.matches("/api/v1/tenants/230100/plans/p-1:review"), None);
        assert_eq!(
            t.openapi_path(),
            "/api/v1/tenants/{tenant}/plans/{id}:submit"
        );
    }

    #[test]
    fn nested_fields_multi_segment_variables_and_rest() {
        let t = PathTemplate::parse("/v1/{book.name=shelves/*/books/*}").unwrap();
        assert_eq!(
            t.matches("/v1/shelves/s1/books/b%202"),
            vars(&[("book.name", "shelves/s1/books/b 2")])
        );
        assert_eq!(t.matches("/v1/shelves/s1/books"), None);
        let t = PathTemplate::parse("/files/{path=**}").unwrap();
        assert_eq!(t.matches("/files/a/b/c"), vars(&[("path", "a/b/c")]));
    }

    #[test]
    fn no_partial_or_longer_matches() {
        let t = PathTemplate::parse("/api/v1/tenants/{tenant}/plans").unwrap();
        assert_eq!(t.matches("/api/v1/tenants/230100/plans/x"), None);
        assert_eq!(t.matches("/api/v1/tenants//plans"), None);
        assert_eq!(t.matches("/api/v1/tenants/230100"), None);
    }

    #[test]
    fn one_split_path_is_tried_against_many_templates() {
        let path = RequestPath::new("/api/v1/tenants/230100/plans/p%2F1:submit").unwrap();
        let submit = PathTemplate::parse("/api/v1/tenants/{tenant}/plans/{id}:submit").unwrap();
        let get = PathTemplate::parse("/api/v1/tenants/{tenant}/plans/{id}").unwrap();
        let list = PathTemplate::parse("/api/v1/tenants/{tenant}/plans").unwrap();
        assert!(submit.fits(&path));
        assert_eq!(
            submit.bind(&path),
            vars(&[("tenant", "230100"), ("id", "p/1")])
        );
        // Without a verb of its own, a template takes the verb as part of the last segment.
        assert_eq!(
            get.bind(&path),
            vars(&[("tenant", "230100"), ("id", "p/1:submit")])
        );
        assert!(!list.fits(&path));
        // The shape fits, the value does not decode: no match.
        let bad = RequestPath::new("/api/v1/tenants/230100/plans/%zz").unwrap();
        assert!(get.fits(&bad));
        assert_eq!(get.bind(&bad), None);
        // `**` may take no segment at all.
        let rest = PathTemplate::parse("/files/{path=**}").unwrap();
        assert_eq!(rest.matches("/files"), vars(&[("path", "")]));
        assert_eq!(rest.matches("/other"), None);
        assert!(RequestPath::new("no-slash").is_none());
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(PathTemplate::parse("no/slash").is_err());
        assert!(PathTemplate::parse("/a/{unclosed").is_err());
        assert!(PathTemplate::parse("/a/**/b").is_err());
        assert!(PathTemplate::parse("/a/{=x}").is_err());
    }
}
