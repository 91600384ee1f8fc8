//! The effect report's aggregates, read on the report's own connections (the statements are
//! in `attribution.rs`).

use super::This;
use crate::store::attribution::{AttributionData, AttributionQuery};
use crate::store::types::*;
use sqlx::Row;

impl This {
    /// The work of [`Store::attribution`](crate::store::Store::attribution).
    pub(super) async fn read_attribution(
        &self,
        q: &AttributionQuery,
    ) -> Result<AttributionData, StoreError> {
        use crate::store::attribution::*;
        let since = q.since.unwrap_or(i64::MIN);
        // On the report's own readers: four statements side by side on PostgreSQL, two
        // one after the other on SQLite; then the redemptions over time.
        let statements = cohort_statements(Self::REPORT_SIDE_BY_SIDE);
        let run = |i: usize| {
            sqlx::query(statements[i].as_str())
                .bind(since)
                .bind(q.until)
                .bind(q.window)
                .fetch_all(&self.report)
        };
        let cohorts = if statements.len() == 4 {
            let (a, b, c, d) = tokio::try_join!(run(0), run(1), run(2), run(3))?;
            vec![a, b, c, d]
        } else {
            let mut rows = Vec::new();
            for i in 0..statements.len() {
                rows.push(run(i).await?);
            }
            rows
        };
        let redemptions = sqlx::query(REDEMPTIONS_SQL)
            .bind(since)
            .fetch_all(&self.report)
            .await?;
        let mut data = AttributionData::default();
        for r in cohorts.iter().flatten() {
            let part: String = r.try_get(0)?;
            let figures = [r.try_get(6)?, r.try_get(7)?, r.try_get(8)?, r.try_get(9)?];
            add_cohort_row(
                &mut data,
                &part,
                (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?),
                (r.try_get(4)?, r.try_get(5)?),
                figures,
            );
        }
        for r in redemptions {
            data.redemptions.push(RedemptionRow {
                source_id: r.try_get(0)?,
                day: r.try_get(1)?,
                count: r.try_get(2)?,
            });
        }
        Ok(data)
    }
}
