//! Loading a provider's Parquet file: spooled into the store as it arrives ([`Spool`], a
//! multipart upload: bounded memory, since a Parquet file's footer comes last), then read back
//! batch by batch, checked against the resource's registered fields and written as the load's
//! part with the registered types. A column of another kind, or a value that does not convert,
//! refuses the file whole, naming the column or the row and field, never the value.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field as ArrowField, Schema};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::engine::{SandboxError, store_url};
use crate::load::{BATCH_ROWS, Field, Loaded, arrow_type, storage, write_part};

/// The content type of a Parquet upload (IANA, 2024).
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// A file being received: its bytes go to a staging object as they arrive.
#[derive(Debug)]
pub struct Spool {
    store: Arc<dyn ObjectStore>,
    path: Path,
    writer: BufWriter,
}

/// A received file, in its staging object until [`Spooled::discard`].
#[derive(Debug)]
pub struct Spooled {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl Spool {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let path = Path::from(format!(
            "staging/upload-{:032x}.parquet",
            rand::random::<u128>()
        ));
        let writer = BufWriter::new(store.clone(), path.clone());
        Self {
            store,
            path,
            writer,
        }
    }

    /// Appends the file's next bytes.
    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<(), SandboxError> {
        self.writer.put(bytes.into()).await.map_err(storage)
    }

    /// The whole file, stored.
    pub async fn finish(mut self) -> Result<Spooled, SandboxError> {
        use tokio::io::AsyncWrite;
        let writer = &mut self.writer;
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut *writer).poll_shutdown(cx))
            .await
            .map_err(storage)?;
        Ok(Spooled {
            store: self.store,
            path: self.path,
        })
    }

    /// Drops what was received (a multipart upload is aborted, not left half-written).
    pub async fn abort(mut self) {
        let _ = self.writer.abort().await;
    }
}

impl Spooled {
    pub async fn discard(self) {
        let _ = self.store.delete(&self.path).await;
    }
}

/// Whether a file's column of `found` type may be loaded as a field registered `kind`: within
/// one family (integers as integers, numbers as decimals, text as text, dates — or text to be
/// read as dates —, booleans), never across.
fn compatible(found: &DataType, wanted: &DataType) -> bool {
    use DataType::*;
    let integer = |t: &DataType| t.is_integer();
    let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    match wanted {
        Int64 => integer(found),
        Float64 => integer(found) || found.is_floating() || found.is_decimal(),
        Utf8 => text(found),
        Date32 => matches!(found, Date32 | Date64) || text(found),
        Boolean => matches!(found, Boolean),
        _ => false,
    }
}

/// A column's type in the registry's words.
fn said(t: &DataType) -> String {
    use DataType::*;
    match t {
        t if t.is_integer() => "integers".into(),
        t if t.is_floating() || t.is_decimal() => "decimals".into(),
        Utf8 | LargeUtf8 | Utf8View => "text".into(),
        Date32 | Date64 => "dates".into(),
        Boolean => "booleans".into(),
        other => format!("{other} values"),
    }
}

/// Loads the Parquet file `spooled` as the part `location` of a load, checked against `fields`.
pub async fn load_parquet(
    store: Arc<dyn ObjectStore>,
    spooled: &Spooled,
    location: &str,
    fields: &[Field],
) -> Result<Loaded, SandboxError> {
    // One partition: the file is read in its order, so that a refusal's row number is the file's.
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(BATCH_ROWS),
    );
    ctx.register_object_store(&store_url(), store.clone());
    let file = format!("{}{}", store_url(), spooled.path);
    let frame = ctx
        .read_parquet(file, ParquetReadOptions::default())
        .await
        .map_err(|_| SandboxError::Rejected("the file is not a Parquet file".into()))?;
    let found = frame.schema().as_arrow().clone();
    let names: Vec<&str> = found.fields().iter().map(|f| f.name().as_str()).collect();
    let missing: Vec<&str> = fields
        .iter()
        .filter(|f| !names.contains(&f.name.as_str()))
        .map(|f| f.name.as_str())
        .collect();
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !fields.iter().any(|f| f.name == **n))
        .copied()
        .collect();
    if !missing.is_empty() || !unknown.is_empty() {
        return Err(SandboxError::Rejected(format!(
            "the file's columns must be the registered fields; missing {missing:?}, not \
             registered {unknown:?}; nothing was loaded"
        )));
    }
    let mut columns = Vec::new();
    for f in fields {
        let wanted = arrow_type(f)?;
        let column = found.field_with_name(&f.name).map_err(storage)?;
        if !compatible(column.data_type(), &wanted) {
            return Err(SandboxError::Rejected(format!(
                "column `{}` holds {}, not a registered {}; nothing was loaded",
                f.name,
                said(column.data_type()),
                f.kind
            )));
        }
        columns.push(ArrowField::new(&f.name, wanted, true));
    }
    let schema = Arc::new(Schema::new(columns));
    let batches = frame.execute_stream().await.map_err(storage)?;
    let target = schema.clone();
    let mut before = 0_u64;
    let conformed = batches.map(move |batch| {
        let batch = batch.map_err(|_| {
            SandboxError::Rejected(format!(
                "the file cannot be read past row {before}; nothing was loaded"
            ))
        })?;
        let conformed = conform(&batch, fields, &schema, before);
        before += batch.num_rows() as u64;
        conformed
    });
    let object = Path::from(location.trim_end_matches('/'));
    write_part(store, object, target, conformed).await
}

/// `batch` with the registered fields only, in their order and types; the first value that does
/// not convert refuses it, by row (counted from 1 over the file, `before` rows came earlier) and
/// field.
fn conform(
    batch: &RecordBatch,
    fields: &[Field],
    schema: &Arc<Schema>,
    before: u64,
) -> Result<RecordBatch, SandboxError> {
    let safe = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for (f, target) in fields.iter().zip(schema.fields()) {
        let source = batch
            .column_by_name(&f.name)
            .ok_or_else(|| storage(&f.name))?;
        let cast = cast_with_options(source, target.data_type(), &safe).map_err(storage)?;
        // A value that did not convert is null where the file had one.
        if cast.null_count() > source.null_count()
            && let Some(at) = (0..source.len()).find(|&i| source.is_valid(i) && cast.is_null(i))
        {
            return Err(SandboxError::Rejected(format!(
                "row {}, field `{}`: a value that is not a registered {}; nothing was loaded",
                before + at as u64 + 1,
                f.name,
                f.kind
            )));
        }
        columns.push(cast);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(storage)
}
