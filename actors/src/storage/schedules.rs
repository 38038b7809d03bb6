//! Scheduled work (`scheduled_tasks`) and its firings (`scheduled_task_runs`). The rules —
//! what a valid schedule is, when it fires next — live with the console's scheduler; this
//! is where they are kept, and where a firing is recorded once however often it is tried.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::{Store, StoreError, now, scheduled_task, scheduled_task_run};

/// Schedules a tick looks at, at most (SPEC §3.2).
pub const DUE_PER_TICK: u64 = 100;

/// What a firing changes on its schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleChange {
    /// When it fired.
    pub last_run: Option<String>,
    /// When it fires next ("" = never).
    pub next_run: String,
    /// Whether it stays enabled.
    pub enabled: bool,
}

fn active(task: scheduled_task::Model) -> scheduled_task::ActiveModel {
    scheduled_task::ActiveModel {
        task_id: Set(task.task_id),
        name: Set(task.name),
        description: Set(task.description),
        schedule_type: Set(task.schedule_type),
        cron_expr: Set(task.cron_expr),
        at_time: Set(task.at_time),
        target_mode: Set(task.target_mode),
        model: Set(task.model),
        initial_message: Set(task.initial_message),
        auto_approve: Set(task.auto_approve),
        auto_approve_tools: Set(task.auto_approve_tools),
        enabled: Set(task.enabled),
        created_by: Set(task.created_by),
        last_run: Set(task.last_run),
        next_run: Set(task.next_run),
        created: Set(task.created),
        updated: Set(task.updated),
        timezone: Set(task.timezone),
        retry_window: Set(task.retry_window),
    }
}

impl Store {
    /// Stores a new schedule.
    pub async fn create_schedule(&self, task: scheduled_task::Model) -> Result<(), StoreError> {
        scheduled_task::Entity::insert(active(task))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Writes every field of an existing schedule (`updated` set to now); false when it is
    /// gone.
    pub async fn save_schedule(&self, mut task: scheduled_task::Model) -> Result<bool, StoreError> {
        task.updated = now();
        let id = task.task_id.clone();
        let result = scheduled_task::Entity::update_many()
            .set(active(task))
            .filter(scheduled_task::Column::TaskId.eq(id))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// One schedule.
    pub async fn schedule(
        &self,
        task_id: &str,
    ) -> Result<Option<scheduled_task::Model>, StoreError> {
        Ok(scheduled_task::Entity::find_by_id(task_id.to_owned())
            .one(&self.db)
            .await?)
    }

    /// Every schedule, newest first.
    pub async fn list_schedules(&self) -> Result<Vec<scheduled_task::Model>, StoreError> {
        Ok(scheduled_task::Entity::find()
            .order_by_desc(scheduled_task::Column::Created)
            .order_by_asc(scheduled_task::Column::TaskId)
            .all(&self.db)
            .await?)
    }

    /// How many schedules exist.
    pub async fn count_schedules(&self) -> Result<u64, StoreError> {
        Ok(scheduled_task::Entity::find().count(&self.db).await?)
    }

    /// Deletes a schedule and its runs; false when there was none.
    pub async fn delete_schedule(&self, task_id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        scheduled_task_run::Entity::delete_many()
            .filter(scheduled_task_run::Column::TaskId.eq(task_id))
            .exec(&txn)
            .await?;
        let deleted = scheduled_task::Entity::delete_by_id(task_id.to_owned())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Enabled schedules whose next run is set and not after `now` (UTC,
    /// `YYYY-MM-DDTHH:MM:SS`), soonest first, at most [`DUE_PER_TICK`].
    pub async fn due_schedules(&self, now: &str) -> Result<Vec<scheduled_task::Model>, StoreError> {
        Ok(scheduled_task::Entity::find()
            .filter(scheduled_task::Column::Enabled.eq(1))
            .filter(scheduled_task::Column::NextRun.ne(""))
            .filter(scheduled_task::Column::NextRun.lte(now))
            .order_by_asc(scheduled_task::Column::NextRun)
            .order_by_asc(scheduled_task::Column::TaskId)
            .limit(DUE_PER_TICK)
            .all(&self.db)
            .await?)
    }

    /// Moves a schedule past the firing due at `due`: only while its next run is still
    /// `due` (a second console that fired the same firing changes nothing). Returns whether
    /// it moved.
    pub async fn advance_schedule(
        &self,
        task_id: &str,
        due: &str,
        change: ScheduleChange,
    ) -> Result<bool, StoreError> {
        let mut update = scheduled_task::Entity::update_many()
            .col_expr(
                scheduled_task::Column::NextRun,
                sea_orm::sea_query::Expr::value(change.next_run),
            )
            .col_expr(
                scheduled_task::Column::Enabled,
                sea_orm::sea_query::Expr::value(i32::from(change.enabled)),
            )
            .col_expr(
                scheduled_task::Column::Updated,
                sea_orm::sea_query::Expr::value(now()),
            );
        if let Some(last) = change.last_run {
            update = update.col_expr(
                scheduled_task::Column::LastRun,
                sea_orm::sea_query::Expr::value(last),
            );
        }
        let result = update
            .filter(scheduled_task::Column::TaskId.eq(task_id))
            .filter(scheduled_task::Column::NextRun.eq(due))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Records a run unless one with its id exists; returns whether this call stored it.
    pub async fn record_run(&self, run: scheduled_task_run::Model) -> Result<bool, StoreError> {
        let result = scheduled_task_run::Entity::insert(scheduled_task_run::ActiveModel {
            run_id: Set(run.run_id),
            task_id: Set(run.task_id),
            node_id: Set(run.node_id),
            ws_id: Set(run.ws_id),
            correlation_id: Set(run.correlation_id),
            started: Set(run.started),
            status: Set(run.status),
            error: Set(run.error),
            scheduled_for: Set(run.scheduled_for),
        })
        .on_conflict_do_nothing_on([scheduled_task_run::Column::RunId])
        .exec_without_returning(&self.db)
        .await?;
        Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
    }

    /// A schedule's runs, newest first, at most `limit`.
    pub async fn runs(
        &self,
        task_id: &str,
        limit: u64,
    ) -> Result<Vec<scheduled_task_run::Model>, StoreError> {
        Ok(scheduled_task_run::Entity::find()
            .filter(scheduled_task_run::Column::TaskId.eq(task_id))
            .order_by_desc(scheduled_task_run::Column::Started)
            .order_by_desc(scheduled_task_run::Column::ScheduledFor)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// How many runs are recorded for a schedule.
    pub async fn count_runs(&self, task_id: &str) -> Result<u64, StoreError> {
        Ok(scheduled_task_run::Entity::find()
            .filter(scheduled_task_run::Column::TaskId.eq(task_id))
            .count(&self.db)
            .await?)
    }

    /// Deletes runs started before `cutoff` (UTC); returns how many.
    pub async fn prune_runs(&self, cutoff: &str) -> Result<u64, StoreError> {
        let result = scheduled_task_run::Entity::delete_many()
            .filter(scheduled_task_run::Column::Started.lt(cutoff))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }
}
