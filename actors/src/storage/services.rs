//! The service registry (`services`): channel gateways and consoles register here with a URL
//! and heartbeat; the `notify` tool finds the gateways that are alive.

use std::time::Duration;

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{Store, StoreError, now, service};

impl Store {
    /// Registers (or refreshes) a service; its heartbeat is now.
    pub async fn register_service(
        &self,
        service_type: &str,
        service_id: &str,
        url: &str,
        metadata: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let now = now();
        let row = service::ActiveModel {
            service_type: Set(service_type.to_owned()),
            service_id: Set(service_id.to_owned()),
            url: Set(url.to_owned()),
            metadata: Set(metadata.to_string()),
            last_heartbeat: Set(now.clone()),
            created: Set(now),
        };
        service::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([service::Column::ServiceType, service::Column::ServiceId])
                    .update_columns([
                        service::Column::Url,
                        service::Column::Metadata,
                        service::Column::LastHeartbeat,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records a heartbeat; false when the service is not registered.
    pub async fn heartbeat_service(
        &self,
        service_type: &str,
        service_id: &str,
    ) -> Result<bool, StoreError> {
        let updated = service::Entity::update_many()
            .col_expr(
                service::Column::LastHeartbeat,
                sea_orm::sea_query::Expr::value(now()),
            )
            .filter(service::Column::ServiceType.eq(service_type))
            .filter(service::Column::ServiceId.eq(service_id))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Removes a service; false when there was none.
    pub async fn deregister_service(
        &self,
        service_type: &str,
        service_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = service::Entity::delete_many()
            .filter(service::Column::ServiceType.eq(service_type))
            .filter(service::Column::ServiceId.eq(service_id))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Services of a type whose last heartbeat is at most `max_age` old, oldest registration
    /// first.
    pub async fn live_services(
        &self,
        service_type: &str,
        max_age: Duration,
    ) -> Result<Vec<service::Model>, StoreError> {
        // An age beyond the calendar admits every heartbeat ("" sorts first).
        let cutoff = chrono::Duration::from_std(max_age)
            .ok()
            .and_then(|age| chrono::Utc::now().checked_sub_signed(age))
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_default();
        Ok(service::Entity::find()
            .filter(service::Column::ServiceType.eq(service_type))
            .filter(service::Column::LastHeartbeat.gte(cutoff))
            .order_by_asc(service::Column::Created)
            .order_by_asc(service::Column::ServiceId)
            .all(&self.db)
            .await?)
    }
}
