//! The project and domain RPCs of `flyteidl.service.AdminService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::pb::flyteidl::admin as pb;
use crate::pb::flyteidl::service::admin_service_server::AdminService;
use crate::projects::{ProjectError, Projects};
use crate::transport::state::AppState;

#[derive(Clone)]
pub(crate) struct AdminApi {
    state: Arc<AppState>,
}

impl AdminApi {
    pub(crate) fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    fn projects(&self) -> Projects<'_> {
        Projects::new(&*self.state.store, &self.state.config.domains)
    }

    /// The caller's bindings (DESIGN.md §12) on this request; `Ok` without bindings.
    fn authorize<T: prost::Message>(&self, method: &str, req: &Request<T>) -> Result<(), Status> {
        crate::auth::roles::check_message(
            self.state.authorizer.as_deref(),
            crate::transport::grpc::identity(req).as_deref(),
            &format!("flyteidl.service.AdminService/{method}"),
            req.get_ref(),
        )
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn register_project(
        &self,
        req: Request<pb::ProjectRegisterRequest>,
    ) -> Result<Response<pb::ProjectRegisterResponse>, Status> {
        self.authorize("RegisterProject", &req)?;
        self.projects()
            .register(req.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ProjectRegisterResponse {}))
    }

    async fn update_project(
        &self,
        req: Request<pb::Project>,
    ) -> Result<Response<pb::ProjectUpdateResponse>, Status> {
        self.authorize("UpdateProject", &req)?;
        self.projects()
            .update(req.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ProjectUpdateResponse {}))
    }

    async fn get_project(
        &self,
        req: Request<pb::ProjectGetRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        self.authorize("GetProject", &req)?;
        let project = self
            .projects()
            .get(req.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(project))
    }

    async fn list_projects(
        &self,
        req: Request<pb::ProjectListRequest>,
    ) -> Result<Response<pb::Projects>, Status> {
        self.authorize("ListProjects", &req)?;
        let id = crate::transport::grpc::identity(&req);
        let mut page = self
            .projects()
            .list(req.into_inner())
            .await
            .map_err(status)?;
        crate::auth::roles::retain_viewable(
            self.state.authorizer.as_deref(),
            id.as_deref(),
            &mut page.projects,
        );
        Ok(Response::new(page))
    }

    async fn get_domains(
        &self,
        req: Request<pb::GetDomainRequest>,
    ) -> Result<Response<pb::GetDomainsResponse>, Status> {
        self.authorize("GetDomains", &req)?;
        Ok(Response::new(self.projects().get_domains()))
    }
}

/// The one gRPC mapping of a projects error (store failures as every store error).
fn status(e: ProjectError) -> Status {
    match e {
        ProjectError::InvalidArgument(m) => Status::invalid_argument(m),
        ProjectError::NotFound(m) => Status::not_found(m),
        ProjectError::AlreadyExists(m) => Status::already_exists(m),
        ProjectError::Store(e) => {
            crate::transport::store_errors::log(&e);
            e.into()
        }
    }
}
