//! The answer ceiling: how fast a bare tonic server can hand out
//! GetCredentials' answer when it does no work at all.
//!
//! Echo answers `grpc.health.v1` Check with a 2-byte message. GetCredentials
//! answers about a kilobyte (the login three times over: username and
//! password, a docker `config.json`, a Kubernetes Secret), and encoding,
//! framing, sending and decoding that costs both processes CPU on the two
//! shared cores whatever the server does to produce it. This ceiling is the
//! echo process serving, next to Check, `berth.v1.ImageService` whose
//! `GetCredentials` answers the very message berth gave to the bench's
//! check call (a clone of it per call, as berth's answer is built from its
//! memo). Its throughput against echo's is what the answer's size alone
//! costs; GetCredentials against it is what berth's work costs.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::Context;
use berth::pb::{self, image_service_client::ImageServiceClient};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{
    Bench, BerthProc, Summary, connect, credentials_client, credentials_request, drive, free_addr,
    ms, project, req,
};

/// `berth.v1.ImageService` with only `GetCredentials`, answering the same
/// message to everyone.
pub struct Answer(pub Arc<pb::GetCredentialsResponse>);

type Streamed<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "the answer ceiling serves GetCredentials only",
    ))
}

#[tonic::async_trait]
impl pb::image_service_server::ImageService for Answer {
    type CopyImageStream = Streamed<pb::CopyImageResponse>;
    type DistributeImageStream = Streamed<pb::DistributeImageResponse>;

    async fn get_credentials(
        &self,
        _: Request<pb::GetCredentialsRequest>,
    ) -> Result<Response<pb::GetCredentialsResponse>, Status> {
        Ok(Response::new((*self.0).clone()))
    }

    async fn parse_image_reference(
        &self,
        _: Request<pb::ParseImageReferenceRequest>,
    ) -> Result<Response<pb::ParseImageReferenceResponse>, Status> {
        unimplemented()
    }
    async fn resolve_image(
        &self,
        _: Request<pb::ResolveImageRequest>,
    ) -> Result<Response<pb::ResolveImageResponse>, Status> {
        unimplemented()
    }
    async fn list_repositories(
        &self,
        _: Request<pb::ListRepositoriesRequest>,
    ) -> Result<Response<pb::ListRepositoriesResponse>, Status> {
        unimplemented()
    }
    async fn list_tags(
        &self,
        _: Request<pb::ListTagsRequest>,
    ) -> Result<Response<pb::ListTagsResponse>, Status> {
        unimplemented()
    }
    async fn get_image(
        &self,
        _: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::GetImageResponse>, Status> {
        unimplemented()
    }
    async fn test_connection(
        &self,
        _: Request<pb::TestConnectionRequest>,
    ) -> Result<Response<pb::TestConnectionResponse>, Status> {
        unimplemented()
    }
    async fn copy_image(
        &self,
        _: Request<pb::CopyImageRequest>,
    ) -> Result<Response<Self::CopyImageStream>, Status> {
        unimplemented()
    }
    async fn distribute_image(
        &self,
        _: Request<pb::DistributeImageRequest>,
    ) -> Result<Response<Self::DistributeImageStream>, Status> {
        unimplemented()
    }
}

/// Measures the answer ceiling with the answer berth gave for `registry_id`
/// (`berth` is a channel to it), with the calls of the GetCredentials
/// figure. Adds its row and returns its summary.
pub async fn answer_section(
    b: &mut Bench,
    berth: &Channel,
    registry_id: &str,
    projects: Arc<Vec<String>>,
    dir: &Path,
) -> anyhow::Result<Summary> {
    let answer = ImageServiceClient::new(berth.clone())
        .get_credentials(req(credentials_request(registry_id, project(7))))
        .await?
        .into_inner();
    let encoded = prost::Message::encode_to_vec(&answer);
    let file = dir.join("answer.bin");
    std::fs::write(&file, &encoded).with_context(|| format!("{}", file.display()))?;
    let addr = free_addr()?;
    let mut server = BerthProc::spawn(
        Command::new(std::env::current_exe()?)
            .arg("--echo-server")
            .arg(addr.to_string())
            .arg("--echo-answer")
            .arg(&file),
        "answer ceiling",
        addr,
        None,
    )?;
    server.wait_serving().await?;
    let channels = connect(addr, b.args.connections).await?;
    // The ceiling must answer what berth answered, or it measures nothing.
    let echoed = ImageServiceClient::new(channels[0].clone())
        .get_credentials(req(pb::GetCredentialsRequest::default()))
        .await?
        .into_inner();
    anyhow::ensure!(
        echoed == answer,
        "the answer ceiling answered another message"
    );
    let m = drive(b, &channels, Some(server.pid()), |i, ch| {
        credentials_client(i, ch, registry_id, projects.clone())
    })
    .await;
    let s = m.summary();
    println!(
        "  answer ceiling ({} bytes): {:.0} calls/s, p50 {} p99 {}",
        encoded.len(),
        s.rate,
        ms(s.p50),
        ms(s.p99)
    );
    b.report.row(
        "—",
        "answer ceiling (GetCredentials' answer, no work)",
        "calls/s",
        m,
        &[],
    );
    drop(channels);
    server.stop().await?;
    Ok(s)
}
