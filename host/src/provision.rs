//! Creates Spanner instances, databases and schema through the admin API.
//!
//! The demo and the tests use it against the emulator; it works the same
//! against Cloud Spanner. The admin clients speak REST: against the emulator
//! they need its REST endpoint (`gateway_main`'s HTTP port).

use google_cloud_lro::Poller as _;
use google_cloud_spanner::client::Spanner;
use google_cloud_spanner_admin_database_v1::client::DatabaseAdmin;
use google_cloud_spanner_admin_instance_v1::client::InstanceAdmin;
use google_cloud_spanner_admin_instance_v1::model::Instance;

/// A provisioning step that failed.
#[derive(Debug, thiserror::Error)]
#[error("Spanner admin: {step} failed: {message}")]
pub struct ProvisionError {
    /// What was being done.
    pub step: String,
    /// Why it failed.
    pub message: String,
}

fn fail(step: impl Into<String>) -> impl FnOnce(google_cloud_spanner::Error) -> ProvisionError {
    let step = step.into();
    move |e| ProvisionError {
        step,
        message: e.to_string(),
    }
}

fn described(step: &str, e: impl std::fmt::Display) -> ProvisionError {
    ProvisionError {
        step: step.to_owned(),
        message: e.to_string(),
    }
}

/// Spanner's admin clients for one project: instances, databases and
/// schema changes.
pub struct SchemaAdmin {
    project: String,
    instances: InstanceAdmin,
    databases: DatabaseAdmin,
}

impl SchemaAdmin {
    /// Admin clients sharing `spanner`'s credentials; `rest_endpoint`
    /// overrides the admin endpoint (the emulator's REST port).
    pub async fn new(
        spanner: &Spanner,
        project: &str,
        rest_endpoint: Option<&str>,
    ) -> Result<Self, ProvisionError> {
        let mut instances = spanner.instance_admin_builder();
        let mut databases = spanner.database_admin_builder();
        if let Some(endpoint) = rest_endpoint {
            instances = instances.with_endpoint(endpoint);
            databases = databases.with_endpoint(endpoint);
        }
        Ok(Self {
            project: project.to_owned(),
            instances: instances
                .build()
                .await
                .map_err(|e| described("building the instance admin client", e))?,
            databases: databases
                .build()
                .await
                .map_err(|e| described("building the database admin client", e))?,
        })
    }

    /// Creates an instance on the emulator's instance config.
    pub async fn create_emulator_instance(&self, instance: &str) -> Result<(), ProvisionError> {
        let project = format!("projects/{}", self.project);
        self.instances
            .create_instance()
            .set_parent(&project)
            .set_instance_id(instance)
            .set_instance(
                Instance::new()
                    .set_config(format!("{project}/instanceConfigs/emulator-config"))
                    .set_display_name(instance)
                    .set_node_count(1),
            )
            .poller()
            .until_done()
            .await
            .map_err(fail(format!("creating instance {instance}")))?;
        Ok(())
    }

    /// Creates an instance on the emulator's instance config unless one of
    /// that name exists already (an emulator used before).
    pub async fn ensure_emulator_instance(&self, instance: &str) -> Result<(), ProvisionError> {
        match self.create_emulator_instance(instance).await {
            Err(err) if err.message.contains("already exists") => {
                tracing::debug!(instance, "instance exists already");
                Ok(())
            }
            done => done,
        }
    }

    /// Creates a database with the given DDL statements.
    pub async fn create_database(
        &self,
        instance: &str,
        database: &str,
        ddl: &[String],
    ) -> Result<(), ProvisionError> {
        self.databases
            .create_database()
            .set_parent(format!("projects/{}/instances/{instance}", self.project))
            .set_create_statement(format!("CREATE DATABASE `{database}`"))
            .set_extra_statements(ddl.to_vec())
            .poller()
            .until_done()
            .await
            .map_err(fail(format!("creating database {database}")))?;
        Ok(())
    }

    /// Drops a database and everything in it.
    pub async fn drop_database(
        &self,
        instance: &str,
        database: &str,
    ) -> Result<(), ProvisionError> {
        self.databases
            .drop_database()
            .set_database(format!(
                "projects/{}/instances/{instance}/databases/{database}",
                self.project
            ))
            .send()
            .await
            .map_err(fail(format!("dropping database {database}")))?;
        Ok(())
    }

    /// Applies more DDL to an existing database.
    pub async fn update_ddl(
        &self,
        instance: &str,
        database: &str,
        ddl: &[String],
    ) -> Result<(), ProvisionError> {
        let update = self
            .databases
            .update_database_ddl()
            .set_database(format!(
                "projects/{}/instances/{instance}/databases/{database}",
                self.project
            ))
            .set_statements(ddl.to_vec())
            .poller()
            .until_done();
        crate::waiting::reported(
            &format!("a schema change of {database} (the Spanner admin endpoint)"),
            update,
        )
        .await
        .map_err(fail(format!("updating the schema of {database}")))?;
        Ok(())
    }
}
