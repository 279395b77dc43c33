//! The project and domain RPCs of `flyteidl.service.AdminService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::pb::flyteidl::admin as pb;
use crate::pb::flyteidl::service::admin_service_server::AdminService;
use crate::projects;
use crate::state::AppState;

#[derive(Clone)]
pub struct AdminApi {
    state: Arc<AppState>,
}

impl AdminApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn register_project(
        &self,
        req: Request<pb::ProjectRegisterRequest>,
    ) -> Result<Response<pb::ProjectRegisterResponse>, Status> {
        projects::register(&self.state, req.into_inner()).await?;
        Ok(Response::new(pb::ProjectRegisterResponse {}))
    }

    async fn update_project(
        &self,
        req: Request<pb::Project>,
    ) -> Result<Response<pb::ProjectUpdateResponse>, Status> {
        projects::update(&self.state, req.into_inner()).await?;
        Ok(Response::new(pb::ProjectUpdateResponse {}))
    }

    async fn get_project(
        &self,
        req: Request<pb::ProjectGetRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        Ok(Response::new(
            projects::get(&self.state, req.into_inner()).await?,
        ))
    }

    async fn list_projects(
        &self,
        req: Request<pb::ProjectListRequest>,
    ) -> Result<Response<pb::Projects>, Status> {
        Ok(Response::new(
            projects::list(&self.state, req.into_inner()).await?,
        ))
    }

    async fn get_domains(
        &self,
        _req: Request<pb::GetDomainRequest>,
    ) -> Result<Response<pb::GetDomainsResponse>, Status> {
        Ok(Response::new(projects::get_domains(&self.state)))
    }
}
