//! Requests no typed client can send, for every RPC, derived from the API's descriptors: bytes
//! that are not protobuf, invalid UTF-8 in each string field (also one message deep), a wrong
//! wire type and an over-long varint for each field, and an unknown field that makes the
//! request larger than the servers accept.
//!
//! Protobuf decoding happens before any handler runs; a body that does not decode is the
//! caller's mistake (INVALID_ARGUMENT naming the field the decoder stopped at — for a field of a
//! `oneof`, the `oneof`), an oversized one RESOURCE_EXHAUSTED.

use std::collections::HashMap;

use prost::Message as _;
use prost::bytes::{Buf, BufMut};
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use tenantry_testkit::TestCluster;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::values::OVERSIZED_BYTES;
use super::{Expect, Tally, World};

/// Sends and receives message bodies as they are.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `path` with `body` as the request message; Ok once the first response message came.
async fn call(channel: Channel, path: &str, token: &str, body: Vec<u8>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let mut request = tonic::Request::new(body);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header value"),
    );
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).expect("a path");
    let mut stream = grpc
        .server_streaming(request, path, RawCodec)
        .await?
        .into_inner();
    stream.message().await.map(drop)
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(field: i32, wire_type: u8, out: &mut Vec<u8>) {
    varint(((field as u64) << 3) | u64::from(wire_type), out);
}

fn length_delimited(field: i32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(field, 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// `0xC3 0x28`: a two-byte UTF-8 sequence whose second byte is no continuation byte.
const INVALID_UTF8: [u8; 2] = [0xc3, 0x28];

/// The field the decoder reports for `field` of `message`: the field, or its `oneof`.
fn reported_name(message: &DescriptorProto, field: &FieldDescriptorProto) -> String {
    match field.oneof_index {
        Some(index) if !field.proto3_optional() => message
            .oneof_decl
            .get(index as usize)
            .map(|oneof| oneof.name().to_string())
            .unwrap_or_else(|| field.name().to_string()),
        _ => field.name().to_string(),
    }
}

/// The raw entries for a request of type `message`: (what, body, expected answer).
fn cases(
    message: &DescriptorProto,
    messages: &HashMap<String, DescriptorProto>,
) -> Vec<(String, Vec<u8>, Expect)> {
    let mut cases = vec![
        (
            "not protobuf".to_string(),
            vec![0xff; 8],
            Expect::Code(Code::InvalidArgument),
        ),
        (
            "an unknown field beyond the size limit".to_string(),
            length_delimited(1000, &vec![b'x'; OVERSIZED_BYTES]),
            Expect::Code(Code::ResourceExhausted),
        ),
    ];
    for field in &message.field {
        let name = reported_name(message, field);
        let number = field.number();
        let mut wrong_wire_type = Vec::new();
        key(number, 5, &mut wrong_wire_type);
        wrong_wire_type.extend_from_slice(&[0, 0, 0, 0]);
        cases.push((
            format!("{name}: wrong wire type"),
            wrong_wire_type,
            Expect::Invalid(name.clone()),
        ));
        match field.r#type() {
            Type::String => cases.push((
                format!("{name}: invalid UTF-8"),
                length_delimited(number, &INVALID_UTF8),
                Expect::Invalid(name.clone()),
            )),
            Type::Int32 | Type::Enum | Type::Bool => {
                let mut overlong = Vec::new();
                key(number, 0, &mut overlong);
                overlong.extend_from_slice(&[0xff; 10]);
                overlong.push(0x01);
                cases.push((
                    format!("{name}: an 11-byte varint"),
                    overlong,
                    Expect::Invalid(name.clone()),
                ));
            }
            Type::Message => {
                let Some(inner) = messages.get(field.type_name()) else {
                    continue;
                };
                if !field.type_name().starts_with(".tenantry.") {
                    continue;
                }
                for inner_field in inner.field.iter().filter(|f| f.r#type() == Type::String) {
                    let path = format!("{name}.{}", reported_name(inner, inner_field));
                    cases.push((
                        format!("{path}: invalid UTF-8"),
                        length_delimited(
                            number,
                            &length_delimited(inner_field.number(), &INVALID_UTF8),
                        ),
                        Expect::Invalid(path),
                    ));
                }
            }
            _ => {}
        }
    }
    cases
}

pub async fn run(cluster: &TestCluster, world: &World, tally: &mut Tally) {
    let files = FileDescriptorSet::decode(tenantry_proto::FILE_DESCRIPTOR_SET)
        .expect("the API's descriptor set");
    let messages: HashMap<String, DescriptorProto> = files
        .file
        .iter()
        .flat_map(|file| {
            file.message_type.iter().map(move |message| {
                (
                    format!(".{}.{}", file.package(), message.name()),
                    message.clone(),
                )
            })
        })
        .collect();
    for file in files
        .file
        .iter()
        .filter(|file| file.package().starts_with("tenantry."))
    {
        for service in &file.service {
            for method in &service.method {
                let rpc = format!("{}.{}/{}", file.package(), service.name(), method.name());
                let input = messages
                    .get(method.input_type())
                    .unwrap_or_else(|| panic!("the input type of {rpc}"));
                let token = world.caller_of(&rpc);
                for (what, body, expect) in cases(input, &messages) {
                    let result = call(cluster.channel(), &format!("/{rpc}"), &token, body).await;
                    tally.note_raw(&rpc, &format!("raw: {what}"), &result, &expect);
                }
            }
        }
    }
}
