//! Loading a provider's data into the platform: CSV checked against the resource's registered
//! fields, written as Parquet into the object store batch by batch (bounded memory), visible only
//! once whole — a load with a row that does not fit is refused whole, naming its line and field.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef};
use datafusion::parquet::arrow::AsyncArrowWriter;
use futures::{Stream, StreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::engine::SandboxError;

/// Rows parsed and written at a time: what a load holds in memory.
pub(crate) const BATCH_ROWS: usize = 8192;

/// A registered field of the resource, as planning describes it.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// The registered type: string, integer, decimal, date or boolean.
    pub kind: String,
    pub personal: bool,
}

/// What a load wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub rows: u64,
    /// The Parquet file of this version.
    pub object: String,
}

pub(crate) fn arrow_type(field: &Field) -> Result<DataType, SandboxError> {
    Ok(match field.kind.to_lowercase().as_str() {
        "string" | "text" => DataType::Utf8,
        "integer" | "int" => DataType::Int64,
        "decimal" | "number" | "float" => DataType::Float64,
        "date" => DataType::Date32,
        "boolean" | "bool" => DataType::Boolean,
        other => {
            return Err(SandboxError::Rejected(format!(
                "field `{}` is registered as `{other}`, a type the sandbox cannot load \
                 (string, integer, decimal, date, boolean)",
                field.name
            )));
        }
    })
}

pub(crate) fn storage(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Engine(e.to_string())
}

/// The header's names, in order.
fn header(line: &str) -> Vec<String> {
    line.trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect()
}

/// The number after `marker` in arrow's message.
fn number_after(message: &str, marker: &str) -> Option<usize> {
    let rest = &message[message.find(marker)? + marker.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Arrow's parse error said as the line (the first data line being `first_line`) and the field,
/// without echoing the row.
fn misfit(message: &str, names: &[String], fields: &[Field], first_line: u64) -> String {
    let value = message
        .split('\'')
        .nth(1)
        .map(|v| format!("`{v}`"))
        .unwrap_or_else(|| "a value".into());
    // Arrow counts data rows from 0.
    let line = number_after(message, " at line ").map(|l| l as u64 + first_line);
    let field = number_after(message, "for column ").and_then(|c| names.get(c));
    let kind = field
        .and_then(|n| fields.iter().find(|f| &f.name == n))
        .map(|f| f.kind.as_str());
    // A line with too few or too many values: the reader counts its own lines from 1.
    let short = number_after(message, "fields for line ").map(|l| l as u64 + first_line - 1);
    match (line, field, kind, short) {
        (Some(line), Some(field), Some(kind), _) => format!(
            "line {line}, field `{field}`: {value} is not a registered {kind}; nothing was loaded"
        ),
        (.., Some(line)) => format!(
            "line {line}: not one value for each of the {} fields the header names; nothing \
             was loaded",
            names.len()
        ),
        _ => format!(
            "{}; nothing was loaded",
            message.split(". Row data").next().unwrap_or("")
        ),
    }
}

/// Loads the CSV of `reader` (a header line of the registered field names, in any order) as
/// the Parquet file of `location`; its first data line is counted as `first_line` in what a
/// refusal says (2 for a whole file). Nothing is visible at `location` unless every row fits:
/// the file is staged outside it and moved in whole.
pub async fn load_csv<R: Read>(
    store: Arc<dyn ObjectStore>,
    location: &str,
    fields: &[Field],
    reader: R,
    first_line: u64,
) -> Result<Loaded, SandboxError> {
    let mut reader = BufReader::new(reader);
    let mut first = String::new();
    reader.read_line(&mut first).map_err(storage)?;
    let names = header(&first);
    let missing: Vec<&str> = fields
        .iter()
        .filter(|f| !names.contains(&f.name))
        .map(|f| f.name.as_str())
        .collect();
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !fields.iter().any(|f| &f.name == *n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() || !unknown.is_empty() {
        return Err(SandboxError::Rejected(format!(
            "line 1: the header must name the registered fields; missing {missing:?}, not \
             registered {unknown:?}"
        )));
    }
    let columns = names
        .iter()
        .map(|n| {
            let f = fields
                .iter()
                .find(|f| &f.name == n)
                .ok_or_else(|| storage(n))?;
            Ok(ArrowField::new(n, arrow_type(f)?, true))
        })
        .collect::<Result<Vec<_>, SandboxError>>()?;
    let schema = Arc::new(Schema::new(columns));
    let csv = ReaderBuilder::new(schema.clone())
        .with_header(false)
        .with_batch_size(BATCH_ROWS)
        .build(reader)
        .map_err(storage)?;

    let base = location.trim_end_matches('/');
    // A location is a directory (its `data.parquet`) or, ending in `.parquet`, the file itself.
    let object = if base.ends_with(".parquet") {
        Path::from(base)
    } else {
        Path::from(format!("{base}/data.parquet"))
    };
    let batches = futures::stream::iter(csv.map(|batch| {
        batch
            .map_err(|e| SandboxError::Rejected(misfit(&e.to_string(), &names, fields, first_line)))
    }));
    write_part(store, object, schema, batches).await
}

/// Writes the batches of `batches` as the Parquet file `object`: staged outside it and moved in
/// whole, so that a batch that fails (a row that does not fit) leaves nothing anywhere.
pub(crate) async fn write_part<S>(
    store: Arc<dyn ObjectStore>,
    object: Path,
    schema: SchemaRef,
    mut batches: S,
) -> Result<Loaded, SandboxError>
where
    S: Stream<Item = Result<RecordBatch, SandboxError>> + Unpin,
{
    let staging = Path::from(format!("staging/{:016x}.parquet", rand::random::<u64>()));
    let sink = BufWriter::new(store.clone(), staging.clone());
    let mut writer = AsyncArrowWriter::try_new(sink, schema, None).map_err(storage)?;
    let mut rows = 0_u64;
    let mut failure = None;
    while let Some(batch) = batches.next().await {
        let written = match batch {
            Ok(batch) => {
                rows += batch.num_rows() as u64;
                writer.write(&batch).await.map_err(storage)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            failure = Some(e);
            break;
        }
    }
    if let Some(failure) = failure {
        // A multipart upload an S3 store began is aborted, not left behind half-written.
        let _ = writer.into_inner().abort().await;
        let _ = store.delete(&staging).await;
        return Err(failure);
    }
    writer.close().await.map_err(storage)?;
    store.rename(&staging, &object).await.map_err(storage)?;
    Ok(Loaded {
        rows,
        object: object.to_string(),
    })
}
