//! `berth registry …` and `berth image …`: an operator's CLI over the
//! generated gRPC client, with table (default) or JSON output, so that
//! day-to-day use does not need grpcurl.

mod output;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use tonic::transport::Channel;

use crate::pb::{
    self, image_service_client::ImageServiceClient, registry_service_client::RegistryServiceClient,
};
use output::Output;

/// Where the berth server is and how to print answers.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// berth server to talk to.
    #[arg(
        long,
        env = "BERTH_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Format,
    /// Name recorded as `updated_by` for changes (metadata x-berth-actor)
    /// when berth runs without authentication.
    #[arg(long, env = "BERTH_ACTOR", default_value = "berth-cli", global = true)]
    pub actor: String,
    /// Bearer token (from `berth token generate`) sent as `authorization`.
    /// On the command line it is visible to every user of the machine
    /// (`ps`); prefer `BERTH_TOKEN` or `--token-file`.
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the bearer token (surrounding whitespace ignored), e.g.
    /// a mounted Kubernetes Secret.
    #[arg(
        long,
        env = "BERTH_TOKEN_FILE",
        conflicts_with = "token",
        global = true
    )]
    pub token_file: Option<std::path::PathBuf>,
    /// CA (PEM) that signed berth's certificate, for an `https://` server.
    #[arg(long, env = "BERTH_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        long,
        env = "BERTH_CLIENT_CERT",
        requires = "client_key",
        global = true
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// Key (PEM) of the client certificate.
    #[arg(
        long,
        env = "BERTH_CLIENT_KEY",
        requires = "client_cert",
        global = true
    )]
    pub client_key: Option<std::path::PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// `berth registry …`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// List registries.
    List {
        /// Only those this project may use.
        #[arg(long)]
        project: Option<String>,
        /// Only this provider (e.g. HARBOR).
        #[arg(long)]
        provider: Option<String>,
    },
    /// Show one registry.
    Get {
        /// Registry id.
        id: String,
    },
    /// Create a registry. The secret is read from --secret-file or stdin,
    /// never from the command line.
    Create(Box<CreateArgs>),
    /// Make a registry the default.
    SetDefault {
        /// Registry id.
        id: String,
    },
    /// Check that a registry is reachable, its TLS verifies and its
    /// credentials are accepted.
    Test {
        /// Registry id.
        id: String,
    },
}

/// Fields of `berth registry create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Provider: ACR_PERSONAL, ACR_ENTERPRISE, TCR_PERSONAL, TCR_ENTERPRISE,
    /// SWR, ECR, GAR, HARBOR, DOCKER_HUB, JFROG, NEXUS, OTHER.
    #[arg(long)]
    provider: String,
    /// Registry address (host[:port], optional scheme).
    #[arg(long, default_value = "")]
    address: String,
    /// Namespace / organization / project.
    #[arg(long, default_value = "")]
    namespace: String,
    /// Region (SWR, ECR, the ACR/TCR access-key modes).
    #[arg(long, default_value = "")]
    region: String,
    /// Nexus repository.
    #[arg(long, default_value = "")]
    repository: String,
    /// Username or access key (id).
    #[arg(long, default_value = "")]
    username: String,
    /// Read the secret from this file.
    #[arg(long, conflicts_with = "secret_stdin")]
    secret_file: Option<PathBuf>,
    /// Read the secret from standard input.
    #[arg(long)]
    secret_stdin: bool,
    /// Projects that may use it (repeat); none means all projects.
    #[arg(long = "project")]
    projects: Vec<String>,
    /// Do not verify the registry's TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// PEM file of the registry's CA.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Make it the default registry.
    #[arg(long)]
    default: bool,
    /// How berth makes the docker login, e.g. ACR_ACCESS_KEY or
    /// TCR_ACCESS_KEY (the `CREDENTIAL_MODE_` prefix may be left out);
    /// the provider's default when omitted.
    #[arg(long)]
    credential_mode: Option<String>,
    /// ACR Enterprise / TCR Enterprise instance id, when the address does
    /// not name the instance.
    #[arg(long, default_value = "")]
    instance_id: String,
    /// HTTP(S) proxy berth reaches the registry through
    /// (`http://host:port`).
    #[arg(long, default_value = "")]
    proxy_url: String,
    /// Username for the proxy.
    #[arg(long, default_value = "")]
    proxy_username: String,
    /// Read the proxy password from this file.
    #[arg(long)]
    proxy_password_file: Option<PathBuf>,
    /// Host reached without the proxy (repeat).
    #[arg(long = "no-proxy")]
    no_proxy: Vec<String>,
    /// Most requests per second berth sends the registry, per replica
    /// (0: unlimited).
    #[arg(long, default_value_t = 0.0)]
    requests_per_second: f64,
    /// Most requests in flight to the registry, per replica (0: unlimited).
    #[arg(long, default_value_t = 0)]
    max_concurrent: u32,
}

/// `berth image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the fully qualified reference of an image.
    Resolve {
        /// The project asking.
        #[arg(long)]
        project: String,
        /// Registry id (default: the project's default registry).
        #[arg(long, default_value = "")]
        registry: String,
        /// Service name or path.
        #[arg(long)]
        image: String,
        /// Tag or tag template, e.g. '{TIMESTAMP}-{TASK_ID}-{BRANCH}'.
        #[arg(long, default_value = "")]
        tag: String,
        /// Digest.
        #[arg(long, default_value = "")]
        digest: String,
        /// Template variable NAME=VALUE (repeat).
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Ask the registry for the digest and pin it.
        #[arg(long)]
        pin: bool,
    },
    /// List an image's tags.
    Tags {
        /// The project asking.
        #[arg(long)]
        project: String,
        /// Registry id (default: the project's default registry).
        #[arg(long, default_value = "")]
        registry: String,
        /// Service name or path.
        #[arg(long)]
        image: String,
        /// Only tags matching this glob.
        #[arg(long, default_value = "")]
        glob: String,
        /// Only tags matching this regular expression.
        #[arg(long, default_value = "")]
        regex: String,
        /// Order: lexical, semver or newest.
        #[arg(long, value_enum, default_value = "lexical")]
        order: Order,
    },
    /// Get credentials for a registry.
    Credentials {
        /// The project asking.
        #[arg(long)]
        project: String,
        /// Registry id (default: by --image-reference, else the default).
        #[arg(long, default_value = "")]
        registry: String,
        /// Pick the registry by this reference's domain.
        #[arg(long, default_value = "")]
        image_reference: String,
        /// Kubernetes namespace for the Secret.
        #[arg(long, default_value = "")]
        kubernetes_namespace: String,
        /// Print only the docker config.json, or only the Kubernetes Secret.
        #[arg(long, value_enum)]
        only: Option<Only>,
    },
}

/// Tag orders.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Order {
    /// Lexical.
    Lexical,
    /// Semantic versions, highest first.
    Semver,
    /// Newest image first.
    Newest,
}

/// Parts of a credential answer.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Only {
    /// docker config.json.
    DockerConfig,
    /// Kubernetes Secret YAML.
    KubernetesSecret,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

async fn channel(args: &ClientArgs) -> anyhow::Result<Channel> {
    let mut endpoint =
        Channel::from_shared(args.server.clone()).context("--server is not a URL")?;
    if args.server.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &args.ca_cert {
            let pem =
                std::fs::read(ca).with_context(|| format!("reading --ca-cert {}", ca.display()))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
            let cert = std::fs::read(cert)
                .with_context(|| format!("reading --client-cert {}", cert.display()))?;
            let key = std::fs::read(key)
                .with_context(|| format!("reading --client-key {}", key.display()))?;
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls).context("TLS settings")?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach berth at {}", args.server))
}

fn request<T>(msg: T, args: &ClientArgs) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "x-berth-actor",
        args.actor
            .parse()
            .context("--actor must be printable ASCII")?,
    );
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --token-file {}", path.display()))?,
        ),
        (None, None) => None,
    };
    if let Some(token) = token {
        let token = token.trim();
        if token.is_empty() {
            anyhow::bail!("the bearer token is empty");
        }
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .context("the bearer token must be printable ASCII")?,
        );
    }
    Ok(r)
}

fn provider_value(name: &str) -> anyhow::Result<i32> {
    pb::Provider::from_str_name(&name.to_ascii_uppercase())
        .map(|p| p as i32)
        .with_context(|| format!("unknown provider `{name}`"))
}

fn credential_mode_value(name: &str) -> anyhow::Result<i32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CREDENTIAL_MODE_") {
        upper
    } else {
        format!("CREDENTIAL_MODE_{upper}")
    };
    pb::CredentialMode::from_str_name(&full)
        .map(|m| m as i32)
        .with_context(|| format!("unknown credential mode `{name}`"))
}

/// Runs `berth registry …`.
pub async fn registry(cmd: RegistryCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = RegistryServiceClient::new(channel(args).await?);
    let out = Output::new(args.output);
    match cmd {
        RegistryCommand::List { project, provider } => {
            let provider = provider
                .as_deref()
                .map(provider_value)
                .transpose()?
                .unwrap_or(0);
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let page = c
                    .list_registries(request(
                        pb::ListRegistriesRequest {
                            project: project.clone().unwrap_or_default(),
                            provider,
                            page_size: 1000,
                            page_token: token,
                        },
                        args,
                    )?)
                    .await
                    .map_err(output::status)?
                    .into_inner();
                all.extend(page.registries);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            out.registries(&all)
        }
        RegistryCommand::Get { id } => {
            let r = c
                .get_registry(request(pb::GetRegistryRequest { id }, args)?)
                .await
                .map_err(output::status)?;
            out.registry(&r.into_inner())
        }
        RegistryCommand::Create(a) => {
            let a = *a;
            let secret = match (&a.secret_file, a.secret_stdin) {
                (Some(f), _) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?,
                (None, true) => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the secret from stdin")?;
                    s
                }
                (None, false) => String::new(),
            };
            let ca_cert_pem = match &a.ca_file {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?,
                None => String::new(),
            };
            let proxy_password = match &a.proxy_password_file {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => String::new(),
            };
            let proxy = (!a.proxy_url.is_empty()
                || !a.proxy_username.is_empty()
                || !proxy_password.is_empty()
                || !a.no_proxy.is_empty())
            .then(|| pb::ProxySettings {
                url: a.proxy_url,
                username: a.proxy_username,
                password: proxy_password,
                no_proxy: a.no_proxy,
                ..Default::default()
            });
            let budget = (a.requests_per_second != 0.0 || a.max_concurrent != 0).then_some(
                pb::RequestBudget {
                    requests_per_second: a.requests_per_second,
                    max_concurrent: a.max_concurrent,
                },
            );
            let registry = pb::Registry {
                provider: provider_value(&a.provider)?,
                address: a.address,
                namespace: a.namespace,
                region: a.region,
                repository: a.repository,
                username: a.username,
                secret: secret.trim_end_matches(['\r', '\n']).to_string(),
                is_default: a.default,
                scope: Some(pb::Scope {
                    all_projects: a.projects.is_empty(),
                    projects: a.projects,
                }),
                tls: Some(pb::TlsSettings {
                    verify: Some(!a.insecure),
                    ca_cert_pem,
                }),
                credential_mode: a
                    .credential_mode
                    .as_deref()
                    .map(credential_mode_value)
                    .transpose()?
                    .unwrap_or(0),
                instance_id: a.instance_id,
                proxy,
                budget,
                ..Default::default()
            };
            let r = c
                .create_registry(request(
                    pb::CreateRegistryRequest {
                        registry: Some(registry),
                    },
                    args,
                )?)
                .await
                .map_err(output::status)?;
            out.registry(&r.into_inner())
        }
        RegistryCommand::SetDefault { id } => {
            let r = c
                .set_default_registry(request(pb::SetDefaultRegistryRequest { id }, args)?)
                .await
                .map_err(output::status)?;
            out.registry(&r.into_inner())
        }
        RegistryCommand::Test { id } => {
            let mut images = ImageServiceClient::new(channel(args).await?);
            let r = images
                .test_connection(request(
                    pb::TestConnectionRequest {
                        registry_id: id,
                        spec: None,
                    },
                    args,
                )?)
                .await
                .map_err(output::status)?
                .into_inner();
            out.connection(&r)?;
            if !(r.reachable && r.credentials_accepted) {
                bail!("connection test failed: {}", r.message);
            }
            Ok(())
        }
    }
}

/// Runs `berth image …`.
pub async fn image(cmd: ImageCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let mut c = ImageServiceClient::new(channel(args).await?);
    let out = Output::new(args.output);
    match cmd {
        ImageCommand::Resolve {
            project,
            registry,
            image,
            tag,
            digest,
            vars,
            pin,
        } => {
            let r = c
                .resolve_image(request(
                    pb::ResolveImageRequest {
                        registry_id: registry,
                        project,
                        image,
                        tag,
                        digest,
                        variables: vars.into_iter().collect::<HashMap<_, _>>(),
                        pin_digest: pin,
                    },
                    args,
                )?)
                .await
                .map_err(output::status)?;
            out.resolved(&r.into_inner())
        }
        ImageCommand::Tags {
            project,
            registry,
            image,
            glob,
            regex,
            order,
        } => {
            let order = match order {
                Order::Lexical => pb::TagOrder::Lexical,
                Order::Semver => pb::TagOrder::Semver,
                Order::Newest => pb::TagOrder::Newest,
            };
            let r = c
                .list_tags(request(
                    pb::ListTagsRequest {
                        registry_id: registry,
                        project,
                        image,
                        glob,
                        regex,
                        order: order as i32,
                        page_size: 1000,
                    },
                    args,
                )?)
                .await
                .map_err(output::status)?;
            out.tags(&r.into_inner().tags)
        }
        ImageCommand::Credentials {
            project,
            registry,
            image_reference,
            kubernetes_namespace,
            only,
        } => {
            let r = c
                .get_credentials(request(
                    pb::GetCredentialsRequest {
                        registry_id: registry,
                        project,
                        image_reference,
                        kubernetes_namespace,
                    },
                    args,
                )?)
                .await
                .map_err(output::status)?
                .into_inner();
            match only {
                Some(Only::DockerConfig) => println!("{}", r.docker_config_json),
                Some(Only::KubernetesSecret) => print!("{}", r.kubernetes_secret_yaml),
                None => out.credentials(&r)?,
            }
            Ok(())
        }
    }
}

/// Runs `berth token …`.
pub fn token(cmd: crate::config::TokenCommand) -> anyhow::Result<()> {
    use crate::auth::tokens;
    use crate::config::TokenCommand;
    let check = |identity: &str| {
        if identity.is_empty()
            || identity.len() > 256
            || identity
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            anyhow::bail!("--identity must be 1 to 256 characters without spaces");
        }
        Ok(())
    };
    match cmd {
        TokenCommand::Generate { identity } => {
            check(&identity)?;
            let token = tokens::generate();
            println!("token: {}", token.expose());
            println!(
                "tokens file line: {}",
                tokens::line_for(&identity, token.expose())
            );
        }
        TokenCommand::Hash { identity } => {
            check(&identity)?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading the token from stdin")?;
            let token = text.trim();
            if token.is_empty() {
                anyhow::bail!("no token on stdin");
            }
            println!("{}", tokens::line_for(&identity, token));
        }
    }
    Ok(())
}
