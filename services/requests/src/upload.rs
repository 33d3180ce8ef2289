//! A whole file streamed into a load (`PUT …/loads/{id}/data`), never held whole: a CSV file is
//! cut into lines as it arrives and written as Parquet parts of at most [`PART_LINES`] lines; a
//! Parquet file (whose footer comes last) is spooled into the store as it arrives, then read back
//! batch by batch. A line or value that does not fit refuses the upload and removes everything it
//! wrote: nothing is half-loaded.

use futures::{Stream, StreamExt};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, TenantScope};
use pdp_proto::pdp::requests::v1 as api;
use pdp_sandbox::load::Field;
use pdp_sandbox::{Sandbox, SandboxError};

use crate::RequestError;
use crate::sandbox::{audit, engine_error, location, own_load, part_in, registered_fields};
use crate::service::Requests;
use crate::store as db;

type Result<T> = std::result::Result<T, RequestError>;

/// Lines one Parquet part of an upload holds at most.
pub const PART_LINES: usize = 100_000;
/// Bytes of lines held before a part is written, whatever their number; also the longest line.
pub const PART_BYTES: usize = 16 << 20;

/// The content types an upload takes.
pub const CSV: &str = "text/csv";
pub use pdp_sandbox::load_parquet::PARQUET;

/// What an upload is, by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Parquet,
}

/// What an upload wrote so far: a CSV file's lines cut into parts, or a Parquet file's one part.
struct Parts<'a> {
    sandbox: &'a Sandbox,
    fields: &'a [Field],
    /// Where the load's parts lie.
    root: String,
    header: Option<Vec<u8>>,
    /// Lines of the part being filled, each ending in `\n`.
    part: Vec<u8>,
    part_lines: usize,
    /// The file's line number of the part's first line.
    first_line: u64,
    rows: u64,
    written: Vec<String>,
}

impl Parts<'_> {
    async fn line(&mut self, mut line: Vec<u8>) -> std::result::Result<(), SandboxError> {
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match &self.header {
            None => {
                self.header = Some(line);
                self.first_line = 2;
            }
            Some(_) => {
                self.part.extend_from_slice(&line);
                self.part.push(b'\n');
                self.part_lines += 1;
                if self.part_lines >= PART_LINES || self.part.len() >= PART_BYTES {
                    self.flush().await?;
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::result::Result<(), SandboxError> {
        if self.part_lines == 0 {
            return Ok(());
        }
        let header = self.header.as_deref().unwrap_or_default();
        let mut csv = Vec::with_capacity(header.len() + 1 + self.part.len());
        csv.extend_from_slice(header);
        csv.push(b'\n');
        csv.append(&mut self.part);
        let object = part_in(&self.root);
        let loaded = self
            .sandbox
            .load_csv(&object, self.fields, csv.as_slice(), self.first_line)
            .await?;
        self.written.push(loaded.object);
        self.rows += loaded.rows;
        self.first_line += self.part_lines as u64;
        self.part_lines = 0;
        Ok(())
    }

    /// Receives a whole Parquet file from `pieces` into a staging object, then loads it as one
    /// part.
    async fn parquet<S>(&mut self, pieces: &mut S, bytes: &mut u64) -> Result<()>
    where
        S: Stream<Item = Result<Vec<u8>>> + Unpin,
    {
        let mut spool = self.sandbox.spool();
        while let Some(piece) = pieces.next().await {
            let written = match piece {
                Ok(piece) => {
                    *bytes += piece.len() as u64;
                    spool.write(piece).await.map_err(refused)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                spool.abort().await;
                return Err(e);
            }
        }
        let spooled = spool.finish().await.map_err(refused)?;
        let object = part_in(&self.root);
        let loaded = self
            .sandbox
            .load_parquet(&spooled, &object, self.fields)
            .await;
        spooled.discard().await;
        let loaded = loaded.map_err(refused)?;
        self.written.push(loaded.object);
        self.rows = loaded.rows;
        if self.rows == 0 {
            return Err(RequestError::invalid(
                "upload",
                vec![FieldViolation::new("data", "the file holds no record")],
            ));
        }
        Ok(())
    }

    /// Removes every part written: the upload is refused whole.
    async fn discard(&self) {
        for object in &self.written {
            if let Err(e) = self.sandbox.delete(object).await {
                tracing::warn!(object, error = %e, "a refused upload's part was not removed");
            }
        }
    }
}

/// The format `content_type` names (parameters such as `charset=utf-8` aside).
fn format_of(content_type: &str) -> Option<Format> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(CSV) {
        Some(Format::Csv)
    } else if essence.eq_ignore_ascii_case(PARQUET) {
        Some(Format::Parquet)
    } else {
        None
    }
}

impl Requests {
    /// Streams the file of `pieces` into the caller's empty open load `id` of `resource_id`.
    /// `content_type` is the upload's ([`CSV`] or [`PARQUET`]); a piece that fails (the client
    /// went away) refuses the upload like a line that does not fit.
    pub async fn upload_data<S>(
        &self,
        who: &Identity,
        tenant: &str,
        resource_id: String,
        id: String,
        content_type: &str,
        mut pieces: S,
    ) -> Result<api::Load>
    where
        S: Stream<Item = Result<Vec<u8>>> + Unpin,
    {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        RequestError::unless_role(who, &[Role::Provider], "loading data")?;
        let sandbox = self.sandbox()?.clone();
        let Some(format) = format_of(content_type) else {
            return Err(RequestError::invalid(
                "upload",
                vec![FieldViolation::new(
                    "content-type",
                    format!("an upload is {CSV} or {PARQUET}, not `{content_type}`"),
                )],
            ));
        };
        let (reader, resource, load_id) = (who.clone(), resource_id.clone(), id.clone());
        let fields = self
            .in_scope(&scope, move |conn, scope, _| {
                let load = own_load(conn, scope, &reader, &resource, &load_id)?;
                empty(&load)?;
                registered_fields(conn, scope, &resource)
            })
            .await?;
        let mut parts = Parts {
            sandbox: &sandbox,
            fields: &fields,
            root: location(scope.tenant().as_str(), &resource_id, &id),
            header: None,
            part: Vec::new(),
            part_lines: 0,
            first_line: 1,
            rows: 0,
            written: Vec::new(),
        };
        let mut bytes = 0u64;
        let read = async {
            if format == Format::Parquet {
                return parts.parquet(&mut pieces, &mut bytes).await;
            }
            let mut pending: Vec<u8> = Vec::new();
            while let Some(piece) = pieces.next().await {
                let piece = piece?;
                bytes += piece.len() as u64;
                pending.extend_from_slice(&piece);
                let mut start = 0;
                while let Some(at) = pending[start..].iter().position(|b| *b == b'\n') {
                    let end = start + at + 1;
                    parts
                        .line(pending[start..end].to_vec())
                        .await
                        .map_err(refused)?;
                    start = end;
                }
                pending.drain(..start);
                if pending.len() > PART_BYTES {
                    return Err(RequestError::invalid(
                        "upload",
                        vec![FieldViolation::new(
                            "data",
                            format!(
                                "line {}: longer than {PART_BYTES} bytes; nothing was loaded",
                                parts.first_line + parts.part_lines as u64
                            ),
                        )],
                    ));
                }
            }
            if !pending.is_empty() {
                parts.line(pending).await.map_err(refused)?;
            }
            parts.flush().await.map_err(refused)?;
            if parts.rows == 0 {
                return Err(RequestError::invalid(
                    "upload",
                    vec![FieldViolation::new(
                        "data",
                        "the file holds no record under its header line",
                    )],
                ));
            }
            Ok(())
        };
        if let Err(e) = read.await {
            parts.discard().await;
            return Err(e);
        }
        let (rows, written) = (parts.rows, parts.written.clone());
        let who = who.clone();
        let recorded = self
            .in_scope(&scope, move |conn, scope, now| {
                let mut load = own_load(conn, scope, &who, &resource_id, &id)?;
                // Another upload (or chunk) may have filled it meanwhile: one of them is kept.
                empty(&load)?;
                load.rows = rows;
                load.chunks += u32::try_from(written.len()).unwrap_or(u32::MAX);
                db::put_load(conn, scope, &load, now)?;
                let details = serde_json::json!({
                    "rows": rows,
                    "bytes": bytes,
                    "parts": written,
                });
                audit(
                    conn,
                    scope,
                    &who,
                    now,
                    "load.uploaded",
                    format!("loads/{id}"),
                    details,
                )?;
                Ok(load)
            })
            .await;
        if recorded.is_err() {
            parts.discard().await;
        }
        recorded
    }
}

/// A refusal of the sandbox's, said of the upload's data.
fn refused(e: SandboxError) -> RequestError {
    match e {
        SandboxError::Rejected(m) => {
            RequestError::invalid("upload", vec![FieldViolation::new("data", m)])
        }
        other => engine_error(other),
    }
}

/// An upload fills an empty load: a retried upload must not load its rows twice.
fn empty(load: &api::Load) -> Result<()> {
    if load.rows > 0 {
        return Err(RequestError::precondition(
            format!("loads/{}", load.id),
            format!(
                "the load already holds {} rows: an upload fills an empty load; commit this one \
                 or open another (CreateLoad)",
                load.rows
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_csv_or_parquet_whatever_its_parameters() {
        assert_eq!(format_of("text/csv"), Some(Format::Csv));
        assert_eq!(format_of("Text/CSV; charset=utf-8"), Some(Format::Csv));
        assert_eq!(
            format_of("application/vnd.apache.parquet"),
            Some(Format::Parquet)
        );
        assert_eq!(format_of("text/plain"), None);
        assert_eq!(format_of(""), None);
        assert_eq!(format_of("application/octet-stream"), None);
    }
}
