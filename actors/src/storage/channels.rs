//! Chat accounts linked to users (`channel_users`) and the threads routed to workstreams
//! (`channel_routes`): the channel gateway acts as the linked
//! user; the console's admin API and `/link` in chat manage the links.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{Store, StoreError, channel_route, channel_user, now};

impl Store {
    /// Links a chat account to a user. An account linked already (to anyone) is a
    /// [`StoreError::Conflict`]; two links made at once cannot both win.
    pub async fn link_channel(
        &self,
        channel_type: &str,
        channel_user_id: &str,
        user_id: &str,
    ) -> Result<channel_user::Model, StoreError> {
        let row = channel_user::Model {
            channel_type: channel_type.to_owned(),
            channel_user_id: channel_user_id.to_owned(),
            user_id: user_id.to_owned(),
            created: now(),
        };
        channel_user::Entity::insert(channel_user::ActiveModel {
            channel_type: Set(row.channel_type.clone()),
            channel_user_id: Set(row.channel_user_id.clone()),
            user_id: Set(row.user_id.clone()),
            created: Set(row.created.clone()),
        })
        .on_conflict_do_nothing_on([
            channel_user::Column::ChannelType,
            channel_user::Column::ChannelUserId,
        ])
        .exec_without_returning(&self.db)
        .await?;
        match self.channel_user(channel_type, channel_user_id).await? {
            Some(stored) if stored == row => Ok(stored),
            Some(stored) => Err(StoreError::Conflict(format!(
                "Channel user already linked to user {}",
                stored.user_id
            ))),
            None => Err(StoreError::NotFound(channel_user_id.to_owned())),
        }
    }

    /// The link of one chat account.
    pub async fn channel_user(
        &self,
        channel_type: &str,
        channel_user_id: &str,
    ) -> Result<Option<channel_user::Model>, StoreError> {
        Ok(
            channel_user::Entity::find_by_id((channel_type.to_owned(), channel_user_id.to_owned()))
                .one(&self.db)
                .await?,
        )
    }

    /// A user's linked accounts, newest first.
    pub async fn channels_of(&self, user_id: &str) -> Result<Vec<channel_user::Model>, StoreError> {
        Ok(channel_user::Entity::find()
            .filter(channel_user::Column::UserId.eq(user_id))
            .order_by_desc(channel_user::Column::Created)
            .order_by_asc(channel_user::Column::ChannelType)
            .all(&self.db)
            .await?)
    }

    /// Removes a link; false when there was none.
    pub async fn unlink_channel(
        &self,
        channel_type: &str,
        channel_user_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = channel_user::Entity::delete_by_id((
            channel_type.to_owned(),
            channel_user_id.to_owned(),
        ))
        .exec(&self.db)
        .await?;
        Ok(deleted.rows_affected > 0)
    }
}

impl Store {
    /// The route of a thread or room, if any.
    pub async fn channel_route(
        &self,
        channel_type: &str,
        channel_id: &str,
    ) -> Result<Option<channel_route::Model>, StoreError> {
        Ok(
            channel_route::Entity::find_by_id((channel_type.to_owned(), channel_id.to_owned()))
                .one(&self.db)
                .await?,
        )
    }

    /// Points a thread or room at a workstream (replacing any route it had).
    pub async fn set_channel_route(
        &self,
        channel_type: &str,
        channel_id: &str,
        ws_id: &str,
        node_id: &str,
    ) -> Result<(), StoreError> {
        channel_route::Entity::insert(channel_route::ActiveModel {
            channel_type: Set(channel_type.to_owned()),
            channel_id: Set(channel_id.to_owned()),
            ws_id: Set(ws_id.to_owned()),
            node_id: Set(node_id.to_owned()),
            created: Set(now()),
        })
        .on_conflict(
            OnConflict::columns([
                channel_route::Column::ChannelType,
                channel_route::Column::ChannelId,
            ])
            .update_columns([
                channel_route::Column::WsId,
                channel_route::Column::NodeId,
                channel_route::Column::Created,
            ])
            .to_owned(),
        )
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// Removes a route; false when there was none.
    pub async fn delete_channel_route(
        &self,
        channel_type: &str,
        channel_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted =
            channel_route::Entity::delete_by_id((channel_type.to_owned(), channel_id.to_owned()))
                .exec(&self.db)
                .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// The routes of one workstream (a thread per platform, usually one).
    pub async fn routes_of_workstream(
        &self,
        ws_id: &str,
    ) -> Result<Vec<channel_route::Model>, StoreError> {
        Ok(channel_route::Entity::find()
            .filter(channel_route::Column::WsId.eq(ws_id))
            .order_by_asc(channel_route::Column::ChannelType)
            .all(&self.db)
            .await?)
    }
}
