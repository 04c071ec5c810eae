//! The PostgreSQL connector: Users become LOGIN roles (no password:
//! authentication stays with the server's own method), Groups NOLOGIN
//! roles, memberships role grants naming the grantor (PostgreSQL 16 needs
//! it for non-superusers).
//!
//! Safety, after ldap2pg's users' reports: only roles Roster created are
//! ever altered, granted or dropped — their comment marks them; `postgres`,
//! `pg_*`, the connecting role and the configured protected roles are never
//! touched; identifiers and literals are quoted by the server's own
//! `format('%I', …)` / `%L`, never interpolated. A role's remote id is its
//! OID, stable across renames. Disabling is `NOLOGIN` plus ending the
//! role's sessions (never `VALID UNTIL`, which only expires a password);
//! deleting reassigns and drops what the role owns in every configured
//! database before `DROP ROLE`, and keeps the marker until the drop works.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::api::PostgresTlsMode;

use super::{Connector, ConnectorError, DesiredGroup, DesiredUser, RemoteAccount, Result};

/// The comment on every role Roster manages.
const MARKER: &str = "managed by roster";
/// A role as [`Role::of`] reads it: oid, name, can log in, carries the
/// marker (`$2`); by name (`$1`) or by OID.
macro_rules! role_query {
    ($condition:literal) => {
        concat!(
            "SELECT oid::int8, rolname::text, rolcanlogin, ",
            "coalesce(shobj_description(oid, 'pg_authid'), '') = $2 ",
            "FROM pg_roles WHERE ",
            $condition
        )
    };
}
const ROLES_BY_NAME: &str = role_query!("rolname = $1");
const ROLES_BY_OID: &str = role_query!("oid = $1::int8::oid");
/// The roles Roster (`$2`) granted to the role with OID `$1` that it does
/// not manage (`$3` is the marker): the existing roles of `groupRoles`.
const EXISTING_GRANTED: &str = "SELECT r.rolname::text FROM pg_auth_members a \
     JOIN pg_roles r ON r.oid = a.roleid \
     WHERE a.member = $1::int8::oid \
     AND a.grantor = (SELECT oid FROM pg_roles WHERE rolname = $2) \
     AND coalesce(shobj_description(r.oid, 'pg_authid'), '') <> $3";
/// Whether role `$1` is a superuser, and whether it carries the marker `$2`.
const GRANTABLE: &str = "SELECT rolsuper, \
     coalesce(shobj_description(oid, 'pg_authid'), '') = $2 FROM pg_roles WHERE rolname = $1";
/// userNames compare case-insensitively; an exact match first.
const ROLES_BY_FOLDED_NAME: &str =
    role_query!("lower(rolname) = lower($1) ORDER BY rolname = $1 DESC, oid");

/// PostgreSQL truncates longer identifiers; Roster refuses them instead of
/// letting two names collide.
const MAX_NAME: usize = 63;

/// How to reach the server and what never to touch.
#[derive(Clone)]
pub struct PostgresConnector {
    config: Config,
    /// `None`: plain TCP (`tlsMode: Disable`).
    tls: Option<MakeRustlsConnect>,
    /// Open connections by database name, shared by concurrent calls (a
    /// client pipelines their statements) and replaced once closed: one
    /// TLS and SCRAM handshake per connection, not per call.
    connections: Arc<Mutex<HashMap<String, Arc<Client>>>>,
    user: String,
    fallback_owner: String,
    databases: Vec<String>,
    protected: Vec<String>,
    /// Group displayName -> the existing roles its role is granted.
    group_roles: Arc<std::collections::BTreeMap<String, Vec<String>>>,
}

impl std::fmt::Debug for PostgresConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the config: it holds the password.
        f.debug_struct("PostgresConnector")
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A TLS client that checks the server's certificate against `ca` (PEM),
/// or the system's roots without one, and its name against the host.
fn tls_client(ca: Option<&[u8]>) -> Result<MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| {
                    ConnectorError::Misconfigured(format!("the PostgreSQL CA is not PEM: {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    ConnectorError::Misconfigured(format!("the PostgreSQL CA is unusable: {e}"))
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(ConnectorError::Misconfigured(
            "no CA certificate to check the PostgreSQL server against".into(),
        ));
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl PostgresConnector {
    /// With `ca`: the PEM of the CA certificate, when the settings name one.
    pub fn new(
        settings: &crate::api::PostgresConnector,
        password: &str,
        ca: Option<&[u8]>,
    ) -> Result<Self> {
        let mut config = Config::new();
        config
            .host(&settings.host)
            .port(settings.port)
            .user(&settings.user)
            .password(password)
            .dbname(&settings.database)
            .application_name("roster")
            .connect_timeout(super::REQUEST_TIMEOUT);
        let tls = match settings.tls_mode {
            PostgresTlsMode::Disable => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            PostgresTlsMode::VerifyFull => {
                config.ssl_mode(SslMode::Require);
                Some(tls_client(ca)?)
            }
        };
        let databases = if settings.databases.is_empty() {
            vec![settings.database.clone()]
        } else {
            settings.databases.clone()
        };
        Ok(Self {
            config,
            tls,
            connections: Arc::default(),
            user: settings.user.clone(),
            fallback_owner: settings.fallback_owner.clone(),
            databases,
            protected: settings.protected_roles.clone(),
            group_roles: Arc::new(
                settings
                    .group_roles
                    .iter()
                    .map(|entry| (entry.group.clone(), entry.roles.clone()))
                    .collect(),
            ),
        })
    }

    /// A connection to `database` (the configured one when `None`): an open
    /// one, or a new one.
    async fn connect(&self, database: Option<&str>) -> Result<Arc<Client>> {
        // By name: the configured database may be listed in `databases` too.
        let key = database
            .or(self.config.get_dbname())
            .unwrap_or_default()
            .to_owned();
        let open = self
            .connections
            .lock()
            .expect("connections lock")
            .get(&key)
            .filter(|client| !client.is_closed())
            .cloned();
        if let Some(client) = open {
            return Ok(client);
        }
        let client = Arc::new(self.open(database).await?);
        self.connections
            .lock()
            .expect("connections lock")
            .insert(key, client.clone());
        Ok(client)
    }

    /// Opens a connection to `database` (the configured one when `None`).
    async fn open(&self, database: Option<&str>) -> Result<Client> {
        let mut config = self.config.clone();
        if let Some(database) = database {
            config.dbname(database);
        }
        match &self.tls {
            Some(tls) => {
                let (client, connection) =
                    config.connect(tls.clone()).await.map_err(unavailable)?;
                tokio::spawn(log_end(connection));
                Ok(client)
            }
            None => {
                let (client, connection) = config.connect(NoTls).await.map_err(unavailable)?;
                tokio::spawn(log_end(connection));
                Ok(client)
            }
        }
    }

    /// Whether `name` is one Roster must never touch.
    fn is_protected(&self, name: &str) -> bool {
        name == "postgres"
            || name.starts_with("pg_")
            || name == self.user
            || name == self.fallback_owner
            || self.protected.iter().any(|p| p == name)
    }

    /// Refuses a name Roster may not create or alter.
    fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(rejected(format!(
                "role name {name:?} must be 1 to {MAX_NAME} bytes"
            )));
        }
        if self.is_protected(name) {
            return Err(rejected(format!("role {name:?} is protected")));
        }
        Ok(())
    }

    /// The role named `name`: (oid, can log in, managed by Roster).
    async fn role_by_name(&self, client: &Client, name: &str) -> Result<Option<Role>> {
        let row = client
            .query_opt(ROLES_BY_NAME, &[&name, &MARKER])
            .await
            .map_err(refused)?;
        Ok(row.map(|r| Role::of(&r)))
    }

    /// The role whose OID is `remote_id`, if it still exists.
    async fn role_by_id(&self, client: &Client, remote_id: &str) -> Result<Option<Role>> {
        let oid: i64 = remote_id
            .parse()
            .map_err(|_| rejected(format!("{remote_id:?} is not a role's OID")))?;
        let row = client
            .query_opt(ROLES_BY_OID, &[&oid, &MARKER])
            .await
            .map_err(refused)?;
        Ok(row.map(|r| Role::of(&r)))
    }

    /// The role `remote_id`, which Roster must manage; `None` when gone.
    async fn managed(&self, client: &Client, remote_id: &str) -> Result<Option<Role>> {
        match self.role_by_id(client, remote_id).await? {
            Some(role) if !role.managed || self.is_protected(&role.name) => Err(rejected(format!(
                "role {:?} is not managed by Roster: left alone",
                role.name
            ))),
            other => Ok(other),
        }
    }

    /// The managed role `remote_id`, which must still exist.
    async fn existing(&self, client: &Client, remote_id: &str) -> Result<Role> {
        self.managed(client, remote_id)
            .await?
            .ok_or_else(|| not_found(remote_id))
    }

    /// Runs `template` with `%I`/`%L` placeholders filled, quoted by the
    /// server's `format()`.
    async fn run(&self, client: &Client, template: &str, args: &[&str]) -> Result<()> {
        self.run_all(client, &[(template, args.to_vec())]).await
    }

    /// Runs the statements as one transaction (all or none), each quoted
    /// by the server's `format()`: two round trips however many there are.
    async fn run_all(&self, client: &Client, statements: &[(&str, Vec<&str>)]) -> Result<()> {
        if statements.is_empty() {
            return Ok(());
        }
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
        let mut formats = Vec::new();
        for (template, args) in statements {
            params.push(template);
            let mut placeholders = vec![format!("${}::text", params.len())];
            for arg in args {
                params.push(arg);
                placeholders.push(format!("${}::text", params.len()));
            }
            formats.push(format!("format({})", placeholders.join(", ")));
        }
        let query = format!("SELECT concat_ws(E';\\n', {})", formats.join(", "));
        let script: String = client
            .query_one(query.as_str(), &params)
            .await
            .map_err(refused)?
            .get(0);
        // Several statements in one simple query run as one transaction.
        client.batch_execute(&script).await.map_err(refused)
    }

    /// Creates a role marked as Roster's, or adopts a managed one by that
    /// name; returns its OID.
    async fn create_role(&self, name: &str, login: bool) -> Result<String> {
        self.check_name(name)?;
        let client = self.connect(None).await?;
        if let Some(role) = self.role_by_name(&client, name).await? {
            if !role.managed {
                return Err(rejected(format!(
                    "a role {name:?} exists that Roster did not create: left alone"
                )));
            }
            return Ok(role.oid.to_string());
        }
        let login = if login { "LOGIN" } else { "NOLOGIN" };
        // Together: a role never exists without its marker (a crash
        // between the two would leave one Roster then refuses as not its own).
        let create = format!("CREATE ROLE %I {login}");
        self.run_all(
            &client,
            &[
                (create.as_str(), vec![name]),
                ("COMMENT ON ROLE %I IS %L", vec![name, MARKER]),
            ],
        )
        .await?;
        let role = self
            .role_by_name(&client, name)
            .await?
            .ok_or_else(|| unavailable_text("the role vanished after its creation"))?;
        Ok(role.oid.to_string())
    }

    /// Grants group role `remote_id` the existing roles `groupRoles` maps
    /// `display_name` to, and revokes those Roster granted it that are no
    /// longer mapped. Members inherit them through the group role, so
    /// PostgreSQL itself keeps track of who has them through which group.
    async fn grant_existing_roles(
        &self,
        client: &Client,
        group: &Role,
        display_name: &str,
    ) -> Result<()> {
        let wanted: BTreeSet<&str> = self
            .group_roles
            .get(display_name)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let granted: BTreeSet<String> = client
            .query(EXISTING_GRANTED, &[&group.oid, &self.user, &MARKER])
            .await
            .map_err(refused)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut changes: Vec<(&str, Vec<&str>)> = Vec::new();
        for role in wanted.iter().filter(|r| !granted.contains(**r)) {
            let found: Option<(bool, bool)> = client
                .query_opt(GRANTABLE, &[role, &MARKER])
                .await
                .map_err(refused)?
                .map(|row| (row.get(0), row.get(1)));
            let why = match found {
                None => "does not exist",
                Some((_, true)) => "is a role Roster manages: name existing roles only",
                Some((true, _)) => "is a superuser role",
                Some((false, false)) => {
                    changes.push((
                        "GRANT %I TO %I GRANTED BY %I",
                        vec![role, &group.name, &self.user],
                    ));
                    continue;
                }
            };
            return Err(rejected(format!("groupRoles names {role:?}, which {why}")));
        }
        for role in granted.iter().filter(|r| !wanted.contains(r.as_str())) {
            changes.push((
                "REVOKE %I FROM %I GRANTED BY %I",
                vec![role, &group.name, &self.user],
            ));
        }
        self.run_all(client, &changes).await
    }

    async fn set_login(&self, remote_id: &str, login: bool) -> Result<()> {
        let client = self.connect(None).await?;
        let role = self.existing(&client, remote_id).await?;
        if role.login != login {
            let change = if login { "LOGIN" } else { "NOLOGIN" };
            self.run(&client, &format!("ALTER ROLE %I {change}"), &[&role.name])
                .await?;
        }
        if !login {
            // NOLOGIN only refuses new sessions: end the open ones.
            end_sessions(&client, &role.name).await?;
        }
        Ok(())
    }

    async fn rename(&self, remote_id: &str, name: &str) -> Result<()> {
        self.check_name(name)?;
        let client = self.connect(None).await?;
        let role = self.existing(&client, remote_id).await?;
        if role.name != name {
            self.run(&client, "ALTER ROLE %I RENAME TO %I", &[&role.name, name])
                .await?;
        }
        Ok(())
    }

    /// Drops a managed role: first, in every configured database, what it
    /// owns goes to the fallback owner and its privileges are dropped; the
    /// role (and so its marker) stays until `DROP ROLE` succeeds.
    async fn drop_role(&self, remote_id: &str) -> Result<()> {
        let client = self.connect(None).await?;
        let Some(role) = self.managed(&client, remote_id).await? else {
            return Ok(());
        };
        // REASSIGN and DROP OWNED need the privileges of the role: a
        // CREATEROLE-only Roster takes them for the moment the role has
        // left (its membership goes with the role).
        let superuser: bool = client
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(refused)?
            .get(0);
        if !superuser {
            self.run(&client, "GRANT %I TO %I", &[&role.name, &self.user])
                .await?;
        }
        for database in &self.databases {
            let there = self.connect(Some(database)).await?;
            self.run(
                &there,
                "REASSIGN OWNED BY %I TO %I; DROP OWNED BY %I",
                &[&role.name, &self.fallback_owner, &role.name],
            )
            .await?;
        }
        end_sessions(&client, &role.name).await?;
        self.run(&client, "DROP ROLE IF EXISTS %I", &[&role.name])
            .await
    }
}

/// Ends the open sessions of role `name`.
async fn end_sessions(client: &Client, name: &str) -> Result<()> {
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&name],
        )
        .await
        .map_err(refused)?;
    Ok(())
}

/// Drives a connection until it ends.
async fn log_end<F>(connection: F)
where
    F: std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "postgres connection ended");
    }
}

/// A role as `pg_roles` shows it.
struct Role {
    oid: i64,
    name: String,
    login: bool,
    managed: bool,
}

impl Role {
    fn of(row: &tokio_postgres::Row) -> Self {
        Self {
            oid: row.get(0),
            name: row.get(1),
            login: row.get(2),
            managed: row.get(3),
        }
    }
}

fn unavailable(error: tokio_postgres::Error) -> ConnectorError {
    ConnectorError::Unavailable(format!("postgres: {error}"))
}

fn unavailable_text(text: &str) -> ConnectorError {
    ConnectorError::Unavailable(format!("postgres: {text}"))
}

/// A statement the server refused: its SQLSTATE says whether retrying helps.
fn refused(error: tokio_postgres::Error) -> ConnectorError {
    match error.as_db_error() {
        // Class 08 (connection), 40 (transaction rollback), 53 (resources),
        // 57 (operator intervention): transient.
        Some(db)
            if ["08", "40", "53", "57"]
                .iter()
                .any(|class| db.code().code().starts_with(class)) =>
        {
            unavailable(error)
        }
        Some(db) => {
            let mut detail = format!("postgres {}: {}", db.code().code(), db.message());
            for more in [db.detail(), db.hint()].into_iter().flatten() {
                detail.push_str(&format!(" ({more})"));
            }
            // PostgreSQL's detail names the missing ADMIN option (in
            // English; other message locales get its text alone).
            if *db.code() == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
                && detail.to_lowercase().contains("admin option")
            {
                detail.push_str(ADMIN_OPTION_HINT);
            }
            ConnectorError::Rejected {
                status: 400,
                detail,
            }
        }
        None => unavailable(error),
    }
}

/// What an operator can do when PostgreSQL wants ADMIN OPTION: the role is
/// Roster's (it carries the marker) but Roster, as a CREATEROLE role, did
/// not create it itself.
const ADMIN_OPTION_HINT: &str = "; from PostgreSQL 16 a CREATEROLE role may alter, grant or drop only the roles it holds ADMIN OPTION on (those it created): a role made by a superuser (an earlier Roster install, say) needs a superuser's `GRANT <role> TO <Roster's role> WITH ADMIN OPTION` first";

fn rejected(detail: String) -> ConnectorError {
    ConnectorError::Rejected {
        status: 400,
        detail,
    }
}

fn not_found(remote_id: &str) -> ConnectorError {
    ConnectorError::Rejected {
        status: 404,
        detail: format!("no role with OID {remote_id}"),
    }
}

impl Connector for PostgresConnector {
    async fn find_user(&self, user_name: &str) -> Result<Option<RemoteAccount>> {
        let client = self.connect(None).await?;
        let rows = client
            .query(ROLES_BY_FOLDED_NAME, &[&user_name, &MARKER])
            .await
            .map_err(refused)?;
        Ok(rows
            .iter()
            .map(Role::of)
            .find(|role| role.managed && !self.is_protected(&role.name))
            .map(|role| RemoteAccount {
                id: role.oid.to_string(),
                active: Some(role.login),
            }))
    }

    async fn create_user(&self, user: &DesiredUser) -> Result<String> {
        self.create_role(&user.user_name, user.active).await
    }

    async fn update_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()> {
        self.rename(remote_id, &user.user_name).await?;
        self.set_login(remote_id, user.active).await
    }

    async fn disable_user(&self, remote_id: &str, _: &DesiredUser) -> Result<()> {
        self.set_login(remote_id, false).await
    }

    async fn delete_user(&self, remote_id: &str, _: &DesiredUser) -> Result<()> {
        self.drop_role(remote_id).await
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>> {
        let client = self.connect(None).await?;
        Ok(self
            .role_by_name(&client, display_name)
            .await?
            .filter(|role| role.managed && !self.is_protected(&role.name))
            .map(|role| role.oid.to_string()))
    }

    async fn create_group(&self, group: &DesiredGroup) -> Result<String> {
        let id = self.create_role(&group.display_name, false).await?;
        let client = self.connect(None).await?;
        let role = self.existing(&client, &id).await?;
        self.grant_existing_roles(&client, &role, &group.display_name)
            .await?;
        Ok(id)
    }

    async fn update_group(&self, remote_id: &str, group: &DesiredGroup) -> Result<()> {
        self.rename(remote_id, &group.display_name).await?;
        let client = self.connect(None).await?;
        let role = self.existing(&client, remote_id).await?;
        self.grant_existing_roles(&client, &role, &group.display_name)
            .await
    }

    async fn delete_group(&self, remote_id: &str, _: &DesiredGroup) -> Result<()> {
        self.drop_role(remote_id).await
    }

    async fn change_members(
        &self,
        remote_id: &str,
        desired: &DesiredGroup,
        add: &[String],
        remove: &[String],
        _: &str,
    ) -> Result<()> {
        let client = self.connect(None).await?;
        let group = self.existing(&client, remote_id).await?;
        // A changed groupRoles reaches a group at its next change.
        self.grant_existing_roles(&client, &group, &desired.display_name)
            .await?;
        let mut members: Vec<(&str, Role)> = Vec::new();
        for (ids, template) in [
            (add, "GRANT %I TO %I GRANTED BY %I"),
            (remove, "REVOKE %I FROM %I GRANTED BY %I"),
        ] {
            for id in ids {
                // A member that is gone has no grant left to change.
                if let Some(role) = self.managed(&client, id).await? {
                    members.push((template, role));
                }
            }
        }
        // One transaction for the change's grants.
        let statements: Vec<(&str, Vec<&str>)> = members
            .iter()
            .map(|(template, role)| (*template, vec![&*group.name, &role.name, &self.user]))
            .collect();
        self.run_all(&client, &statements).await
    }
}
