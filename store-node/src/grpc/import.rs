//! The import and export RPCs (`store/import.rs` has the storage side): the message body of
//! an import arrives as a stream of chunks and is gathered up to the store's largest message;
//! an export streams each message of a mailbox in chunks as it is read.

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;

use crate::store::{ImportRequest, Imported, MAX_IMPORT_MESSAGE};

use super::*;

pub(super) type ExportStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ExportChunk, Status>> + Send>>;

pub(super) async fn prepare(
    admin: &AdminService,
    req: Request<PrepareImportRequest>,
) -> Reply<PrepareImportReply> {
    let req = req.into_inner();
    let (created_domain, created_mailbox) = admin
        .store
        .get()?
        .prepare_import(&req.address, req.create)
        .await?;
    Ok(Response::new(PrepareImportReply {
        created_domain,
        created_mailbox,
    }))
}

pub(super) async fn import_message(
    admin: &AdminService,
    req: Request<tonic::Streaming<ImportChunk>>,
) -> Reply<ImportReply> {
    let mut chunks = req.into_inner();
    let first = chunks
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("an import needs at least one chunk"))?;
    let header = first
        .header
        .ok_or_else(|| Status::invalid_argument("the first import chunk carries the header"))?;
    if header.size > MAX_IMPORT_MESSAGE as u64 {
        return Err(crate::StoreError::InvalidArgument(format!(
            "the message ({} octets) is larger than the store's largest ({MAX_IMPORT_MESSAGE})",
            header.size
        ))
        .into());
    }
    let mut body = BytesMut::with_capacity(header.size as usize);
    body.extend_from_slice(&first.data);
    while let Some(chunk) = chunks.message().await? {
        if body.len() + chunk.data.len() > header.size as usize {
            return Err(crate::StoreError::InvalidArgument(
                "the message is longer than its header says".into(),
            )
            .into());
        }
        body.extend_from_slice(&chunk.data);
    }
    if body.len() as u64 != header.size {
        return Err(crate::StoreError::InvalidArgument(format!(
            "the message ended after {} of {} octets",
            body.len(),
            header.size
        ))
        .into());
    }
    let request = ImportRequest {
        address: header.address,
        source_id: header.source_id,
        received_ms: header.received_unix_ms,
        uidl: (!header.uidl.is_empty()).then_some(header.uidl),
        allow_over_quota: header.over_quota == OverQuota::Allow as i32,
    };
    let address = request.address.clone();
    let imported = admin
        .store
        .get()?
        .import_message(request, body.freeze())
        .await?;
    let (outcome, uidl) = match imported {
        Imported::Stored {
            uidl,
            over_quota: false,
        } => (ImportOutcome::Imported, uidl),
        Imported::Stored {
            uidl,
            over_quota: true,
        } => {
            tracing::warn!(mailbox = %address, %uidl, "imported beyond the quota");
            (ImportOutcome::ImportedOverQuota, uidl)
        }
        Imported::AlreadyPresent { uidl } => (ImportOutcome::AlreadyPresent, uidl),
        Imported::SkippedOverQuota => (ImportOutcome::SkippedOverQuota, String::new()),
    };
    Ok(Response::new(ImportReply {
        outcome: outcome as i32,
        uidl,
    }))
}

pub(super) async fn export(
    admin: &AdminService,
    req: Request<AddressRequest>,
) -> Reply<ExportStream> {
    let store = admin.store.get()?.clone();
    let address = req.into_inner().address;
    let list = store.export_list(&address)?;
    let messages = futures::StreamExt::then(futures::stream::iter(list), move |m| {
        let (store, address) = (store.clone(), address.clone());
        async move {
            // A message deleted since the listing is left out.
            match store.fetch_stream(&address, &m.uidl).await {
                Ok(chunks) => Some((m, chunks)),
                Err(crate::StoreError::NoSuchMessage(_)) => None,
                Err(e) => Some((m, futures::stream::once(async move { Err(e) }).boxed())),
            }
        }
    });
    let stream =
        futures::StreamExt::filter_map(messages, |m| async move { m }).flat_map(|(m, chunks)| {
            let head = futures::stream::once(async move {
                Ok(ExportChunk {
                    uidl: m.uidl,
                    size: m.size,
                    data: Bytes::new(),
                })
            });
            let body = futures::StreamExt::map(chunks, |c| {
                c.map(|data| ExportChunk {
                    data,
                    ..ExportChunk::default()
                })
                .map_err(Status::from)
            });
            futures::StreamExt::chain(head, body)
        });
    Ok(Response::new(Box::pin(stream) as ExportStream))
}
