//! A fast gRPC upstream for the gateway benchmark (`make bench`, phase 7): the
//! `flyteidl.service.AdminService` project RPCs answered from memory without any auth, h2c on
//! the given address — what FlyteAdmin would be with its work taken out. GetDomains answers
//! Flyte's three domains; the other RPCs answer empty messages.
//!
//! ```text
//! gateway_upstream 127.0.0.1:18490
//! ```

use flyteauth::pb::flyteidl::admin as pb;
use flyteauth::pb::flyteidl::service::admin_service_server::{AdminService, AdminServiceServer};
use tonic::{Request, Response, Status};

struct Fast;

#[tonic::async_trait]
impl AdminService for Fast {
    async fn register_project(
        &self,
        _: Request<pb::ProjectRegisterRequest>,
    ) -> Result<Response<pb::ProjectRegisterResponse>, Status> {
        Ok(Response::new(pb::ProjectRegisterResponse {}))
    }
    async fn update_project(
        &self,
        _: Request<pb::Project>,
    ) -> Result<Response<pb::ProjectUpdateResponse>, Status> {
        Ok(Response::new(pb::ProjectUpdateResponse {}))
    }
    async fn get_project(
        &self,
        _: Request<pb::ProjectGetRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        Ok(Response::new(pb::Project::default()))
    }
    async fn list_projects(
        &self,
        _: Request<pb::ProjectListRequest>,
    ) -> Result<Response<pb::Projects>, Status> {
        Ok(Response::new(pb::Projects::default()))
    }
    async fn get_domains(
        &self,
        _: Request<pb::GetDomainRequest>,
    ) -> Result<Response<pb::GetDomainsResponse>, Status> {
        let d = |s: &str| pb::Domain {
            id: s.into(),
            name: s.into(),
        };
        Ok(Response::new(pb::GetDomainsResponse {
            domains: vec![d("development"), d("staging"), d("production")],
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18490".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("gateway_upstream: h2c on {}", listener.local_addr()?);
    let mut routes = tonic::service::Routes::builder();
    routes.add_service(AdminServiceServer::new(Fast));
    axum::serve(listener, routes.routes().into_axum_router()).await?;
    Ok(())
}
