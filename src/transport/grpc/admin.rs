//! The project and domain RPCs of `flyteidl.service.AdminService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::pb::flyteidl::admin as pb;
use crate::pb::flyteidl::service::admin_service_server::AdminService;
use crate::projects;
use crate::transport::state::AppState;

#[derive(Clone)]
pub struct AdminApi {
    state: Arc<AppState>,
}

impl AdminApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
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
        projects::register(&self.state, req.into_inner()).await?;
        Ok(Response::new(pb::ProjectRegisterResponse {}))
    }

    async fn update_project(
        &self,
        req: Request<pb::Project>,
    ) -> Result<Response<pb::ProjectUpdateResponse>, Status> {
        self.authorize("UpdateProject", &req)?;
        projects::update(&self.state, req.into_inner()).await?;
        Ok(Response::new(pb::ProjectUpdateResponse {}))
    }

    async fn get_project(
        &self,
        req: Request<pb::ProjectGetRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        self.authorize("GetProject", &req)?;
        Ok(Response::new(
            projects::get(&self.state, req.into_inner()).await?,
        ))
    }

    async fn list_projects(
        &self,
        req: Request<pb::ProjectListRequest>,
    ) -> Result<Response<pb::Projects>, Status> {
        self.authorize("ListProjects", &req)?;
        let id = crate::transport::grpc::identity(&req);
        let mut page = projects::list(&self.state, req.into_inner()).await?;
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
        Ok(Response::new(projects::get_domains(&self.state)))
    }
}
