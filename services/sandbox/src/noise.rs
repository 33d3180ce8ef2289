//! Laplace noise on the released aggregates, scaled to what one record can change each by and
//! divided by the query's ε; seeded by the grant's secret, the plan and the group, so that the
//! same question gets the same answer and repeating it averages nothing away.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::array_value_to_string;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::disclosure::{GROUP_SIZE, NoiseKind, Noised};
use crate::engine::SandboxError;

fn engine(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Engine(e.to_string())
}

/// The largest magnitude of each noised argument, from the one row of the bounds plan.
pub fn bounds(batches: &[RecordBatch]) -> Result<Vec<f64>, SandboxError> {
    let Some(row) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    row.columns()
        .iter()
        .map(|c| {
            let f = cast(c, &DataType::Float64).map_err(engine)?;
            let f = f
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| engine("bound is no number"))?;
            Ok(if f.is_null(0) { 0.0 } else { f.value(0).abs() })
        })
        .collect()
}

/// One Laplace(1) draw: the difference of two exponential draws.
fn laplace(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.r#gen::<f64>();
    let u2: f64 = 1.0 - rng.r#gen::<f64>();
    u1.ln() - u2.ln()
}

#[derive(Debug)]
pub struct Noise<'a> {
    pub noised: &'a [Noised],
    pub bounds: Vec<f64>,
    pub epsilon: f64,
    /// The grant's secret and the plan's hash.
    pub seed: String,
}

impl Noise<'_> {
    fn scale(&self, n: &Noised, size: f64) -> f64 {
        let bound = n
            .bound
            .and_then(|i| self.bounds.get(i))
            .copied()
            .unwrap_or(0.0);
        let size = size.max(1.0);
        let sensitivity = match n.kind {
            NoiseKind::Count => 1.0,
            NoiseKind::Sum => bound,
            NoiseKind::Avg => 2.0 * bound / size,
            NoiseKind::Variance => bound * bound / size,
            NoiseKind::Deviation => bound / size.sqrt(),
        };
        sensitivity / self.epsilon
    }

    /// `batch` with its noised columns noised and the group size dropped.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, SandboxError> {
        let schema = batch.schema();
        let size_at = schema.index_of(GROUP_SIZE).map_err(engine)?;
        let sizes = cast(batch.column(size_at), &DataType::Float64).map_err(engine)?;
        let sizes = sizes
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| engine("group size is no number"))?;
        let noised_at: Vec<(usize, &Noised)> = self
            .noised
            .iter()
            .filter_map(|n| schema.index_of(&n.column).ok().map(|i| (i, n)))
            .collect();
        // A group is known by its keys: every column that is neither noised nor the size.
        let keys: Vec<usize> = (0..batch.num_columns())
            .filter(|i| *i != size_at && !noised_at.iter().any(|(at, _)| at == i))
            .collect();
        let group = |row: usize| -> String {
            keys.iter()
                .map(|k| array_value_to_string(batch.column(*k), row).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\u{1f}")
        };
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if i == size_at {
                continue;
            }
            let Some((_, n)) = noised_at.iter().find(|(at, _)| *at == i) else {
                fields.push(field.as_ref().clone());
                columns.push(batch.column(i).clone());
                continue;
            };
            let exact = cast(batch.column(i), &DataType::Float64).map_err(engine)?;
            let exact = exact
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| engine("aggregate is no number"))?;
            let noisy: Vec<Option<f64>> = (0..batch.num_rows())
                .map(|row| {
                    if exact.is_null(row) {
                        return None;
                    }
                    let digest =
                        Sha256::digest(format!("{}/{}/{}", self.seed, n.column, group(row)));
                    let mut rng = StdRng::from_seed(digest.into());
                    let value =
                        exact.value(row) + self.scale(n, sizes.value(row)) * laplace(&mut rng);
                    Some(value)
                })
                .collect();
            if n.kind == NoiseKind::Count {
                let counts: Int64Array = noisy
                    .iter()
                    .map(|v| v.map(|v| v.round().max(0.0) as i64))
                    .collect();
                fields.push(Field::new(field.name(), DataType::Int64, true));
                columns.push(Arc::new(counts));
            } else {
                fields.push(Field::new(field.name(), DataType::Float64, true));
                columns.push(Arc::new(Float64Array::from(noisy)));
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(engine)
    }
}
