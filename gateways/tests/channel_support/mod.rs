//! What the chat gateway's tests share: a cluster on PostgreSQL (the gateway needs the nodes'
//! database), the gateway started in-process for the platforms given, and Turnstone users
//! with API tokens to link chat accounts to.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use turnstone_actors::accounts;
use turnstone_actors::config::AuthConfig;
use turnstone_actors::storage::Store;
use turnstone_gateways::channel::discord::DiscordSettings;
use turnstone_gateways::channel::matrix::MatrixSettings;
use turnstone_gateways::channel::notify::NotifyAuth;
use turnstone_gateways::channel::router::RouteSettings;
use turnstone_gateways::channel::slack::SlackSettings;
use turnstone_gateways::channel::{GatewayOptions, RunOptions, Running, run};
use turnstone_runtime::supervise::Observer;
use turnstone_tests::services::fresh_postgres_database;

use crate::cluster_support::{Cluster, Db};

/// The platforms a gateway serves, and who may call its notify endpoint.
#[derive(Default)]
pub struct Platforms {
    pub matrix: Option<MatrixSettings>,
    pub discord: Option<DiscordSettings>,
    pub slack: Option<SlackSettings>,
    pub notify: NotifyAuth,
}

/// One node `n1` on `redis` and a fresh PostgreSQL database, with `env` for the node, and the
/// store the gateway shares with it.
pub async fn cluster(redis: &str, env: &[(&str, &str)]) -> (Cluster, Store) {
    let db = fresh_postgres_database().await.unwrap();
    let mut cluster = Cluster::start_on(redis, &[], Db::Postgres(db.clone()), 60, &[]).await;
    for (key, value) in env {
        cluster.env.push(((*key).to_owned(), (*value).to_owned()));
    }
    cluster.add_node("n1").await;
    let store = Store::open_url(&db, 2).await.unwrap();
    (cluster, store)
}

/// The gateway, in this process, on `cluster`'s queue and `store`.
pub async fn gateway(
    cluster: &Cluster,
    store: &Store,
    route: RouteSettings,
    platforms: Platforms,
) -> Running {
    run(
        RunOptions {
            gateway: GatewayOptions {
                client: cluster.client.clone(),
                store: store.clone(),
                route,
                auth: AuthConfig::default(),
                jwt_secret: None,
            },
            matrix: platforms.matrix,
            discord: platforms.discord,
            slack: platforms.slack,
            notify: platforms.notify,
            listener: turnstone_gateways::web::listen("127.0.0.1", 0).unwrap(),
            http_host: "127.0.0.1".into(),
            advertise_url: None,
        },
        Observer::unregistered(),
    )
    .await
    .unwrap()
}

/// A new Turnstone user `name` and an API token of theirs (what `/link` takes).
pub async fn turnstone_user(store: &Store, name: &str) -> String {
    let user = accounts::create_user(store, name, name, "password-123")
        .await
        .unwrap();
    accounts::create_token(store, &user.user_id, "chat", "approve", None)
        .await
        .unwrap()
        .token
}

/// A short random suffix, so names of one run do not meet another's.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}
