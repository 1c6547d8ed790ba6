//! ImageService. Declared by the API; its RPCs answer UNIMPLEMENTED until
//! the image issue fills them in (the generated trait's default methods).

use crate::pb::image_service_server::ImageService;

/// The ImageService handler.
#[derive(Clone, Default)]
pub struct ImageApi;

#[tonic::async_trait]
impl ImageService for ImageApi {}
