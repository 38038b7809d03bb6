//! People (`users`) and their API tokens (`api_tokens`, stored as SHA-256 hashes).

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    Set, Statement, TransactionTrait,
};

use super::{Store, StoreError, api_token, channel_user, now, user};

/// A new user's fields.
#[derive(Clone, Debug)]
pub struct NewUser<'a> {
    /// Login name.
    pub username: &'a str,
    /// Shown name.
    pub display_name: &'a str,
    /// bcrypt hash of the password.
    pub password_hash: &'a str,
}

const FIRST_USER_PG: &str = "INSERT INTO users (user_id, username, display_name, password_hash, \
    created) SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM users)";
const FIRST_USER_SQLITE: &str = "INSERT INTO users (user_id, username, display_name, \
    password_hash, created) SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)";

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Store {
    /// Creates a user; a taken username is a [`StoreError::Conflict`].
    pub async fn create_user(&self, new: NewUser<'_>) -> Result<user::Model, StoreError> {
        if self.user_by_name(new.username).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "username {:?} is taken",
                new.username
            )));
        }
        let row = user::Model {
            user_id: new_id(),
            username: new.username.to_owned(),
            display_name: new.display_name.to_owned(),
            password_hash: new.password_hash.to_owned(),
            created: now(),
        };
        user::Entity::insert(user::ActiveModel {
            user_id: Set(row.user_id.clone()),
            username: Set(row.username.clone()),
            display_name: Set(row.display_name.clone()),
            password_hash: Set(row.password_hash.clone()),
            created: Set(row.created.clone()),
        })
        .exec(&self.db)
        .await?;
        Ok(row)
    }

    /// Creates the first user, atomically: when any user exists (also one created
    /// concurrently) it is `Conflict("Setup already completed")`.
    pub async fn create_first_user(&self, new: NewUser<'_>) -> Result<user::Model, StoreError> {
        let row = user::Model {
            user_id: new_id(),
            username: new.username.to_owned(),
            display_name: new.display_name.to_owned(),
            password_hash: new.password_hash.to_owned(),
            created: now(),
        };
        let backend = self.backend();
        let values: Vec<sea_orm::Value> = vec![
            row.user_id.clone().into(),
            row.username.clone().into(),
            row.display_name.clone().into(),
            row.password_hash.clone().into(),
            row.created.clone().into(),
        ];
        let inserted = if backend == DbBackend::Postgres {
            // Serialise concurrent setups: the NOT EXISTS check and the insert under one lock.
            let txn = self.db.begin().await?;
            txn.execute_unprepared("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                .await?;
            let result = txn
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    FIRST_USER_PG,
                    values,
                ))
                .await?;
            txn.commit().await?;
            result.rows_affected()
        } else {
            // One statement: SQLite runs it under its write lock.
            self.db
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    FIRST_USER_SQLITE,
                    values,
                ))
                .await?
                .rows_affected()
        };
        if inserted == 0 {
            return Err(StoreError::Conflict("Setup already completed".into()));
        }
        Ok(row)
    }

    /// A user by login name.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<user::Model>, StoreError> {
        Ok(user::Entity::find()
            .filter(user::Column::Username.eq(username))
            .one(&self.db)
            .await?)
    }

    /// A user by id.
    pub async fn user(&self, user_id: &str) -> Result<Option<user::Model>, StoreError> {
        Ok(user::Entity::find_by_id(user_id.to_owned())
            .one(&self.db)
            .await?)
    }

    /// How many users exist.
    pub async fn count_users(&self) -> Result<u64, StoreError> {
        Ok(user::Entity::find().count(&self.db).await?)
    }

    /// Every user, oldest first.
    pub async fn list_users(&self) -> Result<Vec<user::Model>, StoreError> {
        Ok(user::Entity::find()
            .order_by_asc(user::Column::Created)
            .order_by_asc(user::Column::Username)
            .all(&self.db)
            .await?)
    }

    /// Stores a token (its hash, never the token).
    pub async fn insert_token(&self, token: api_token::Model) -> Result<(), StoreError> {
        api_token::Entity::insert(api_token::ActiveModel {
            token_id: Set(token.token_id),
            token_hash: Set(token.token_hash),
            token_prefix: Set(token.token_prefix),
            user_id: Set(token.user_id),
            name: Set(token.name),
            scopes: Set(token.scopes),
            created: Set(token.created),
            expires: Set(token.expires),
        })
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// The token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<api_token::Model>, StoreError> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(hash))
            .one(&self.db)
            .await?)
    }

    /// A user's tokens, oldest first.
    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<api_token::Model>, StoreError> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(user_id))
            .order_by_asc(api_token::Column::Created)
            .all(&self.db)
            .await?)
    }

    /// Deletes a token; false when there was none.
    pub async fn revoke_token(&self, token_id: &str) -> Result<bool, StoreError> {
        let deleted = api_token::Entity::delete_by_id(token_id.to_owned())
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Deletes a user with their tokens and chat links; false when there was none.
    pub async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin().await?;
        api_token::Entity::delete_many()
            .filter(api_token::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        channel_user::Entity::delete_many()
            .filter(channel_user::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        let deleted = user::Entity::delete_by_id(user_id.to_owned())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected > 0)
    }
}
