//! Calls straight to OTLP protobuf bytes: the span and log record of each call are written field
//! by field into one buffer per request, with no message structs and no per-attribute
//! allocations in between (building `opentelemetry-proto` structs cost ~8 µs per call, most of
//! it malloc). Tests decode the bytes with prost and check every field.
//! The attribute names here are kspan's interface (see the README's attribute table); those in
//! an OpenTelemetry namespace are the semantic-conventions crate's constants.

use std::{sync::Arc, time::SystemTime};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_semantic_conventions::attribute;
use prost::{encoding::encoded_len_varint, Message};

use kspan_decode::{
    cgroup::ContainerIdentity, flag_names, signal_name, ArgValue, Call, CallDetail, CgroupLookup,
    DeclaredCall, Name, SignalfdCall,
};

use crate::{
    ids::{CallIds, RunIds, TraceGrouping},
    request_buffers::{RequestBuffer, RequestBuffers},
    resource::{ResourcePer, Resources},
};

/// W3C trace flags: sampled (every call is recorded).
const SAMPLED: u32 = 1;

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

/// Field numbers, from opentelemetry-proto's `.proto` files.
mod field {
    pub const REQUEST_RESOURCE_ITEMS: u32 = 1; // resource_spans / resource_logs
    pub const RESOURCE: u32 = 1;
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    pub const SCOPE_ITEMS: u32 = 2; // scope_spans / scope_logs
    pub const SCOPE: u32 = 1;
    pub const ITEMS: u32 = 2; // spans / log_records

    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub const SPAN_NAME: u32 = 5;
    pub const SPAN_KIND: u32 = 6;
    pub const SPAN_START: u32 = 7;
    pub const SPAN_END: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_STATUS: u32 = 15;
    pub const SPAN_FLAGS: u32 = 16;
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;

    pub const LOG_TIME: u32 = 1;
    pub const LOG_SEVERITY_NUMBER: u32 = 2;
    pub const LOG_SEVERITY_TEXT: u32 = 3;
    pub const LOG_BODY: u32 = 5;
    pub const LOG_ATTRIBUTES: u32 = 6;
    pub const LOG_FLAGS: u32 = 8;
    pub const LOG_TRACE_ID: u32 = 9;
    pub const LOG_SPAN_ID: u32 = 10;
    pub const LOG_OBSERVED_TIME: u32 = 11;
    pub const LOG_EVENT_NAME: u32 = 12;

    pub const KEY_VALUE_KEY: u32 = 1;
    pub const KEY_VALUE_VALUE: u32 = 2;
    pub const ANY_STRING: u32 = 1;
    pub const ANY_BOOL: u32 = 2;
    pub const ANY_INT: u32 = 3;
    pub const ANY_ARRAY: u32 = 5;
    pub const ARRAY_VALUES: u32 = 1;
}

/// `SPAN_KIND_INTERNAL`, `STATUS_CODE_ERROR`, `SEVERITY_NUMBER_INFO`, `SEVERITY_NUMBER_WARN`.
const SPAN_KIND_INTERNAL: u64 = 1;
const STATUS_CODE_ERROR: u64 = 2;
const SEVERITY_INFO: u64 = 9;
const SEVERITY_WARN: u64 = 13;

/// Tag of a length-delimited field whose number fits a one-byte key (all of an attribute
/// list's here: spans' 9, log records' 6).
const fn short_tag(field: u32) -> u8 {
    assert!(field < 16);
    (field << 3 | LENGTH_DELIMITED) as u8
}

/// What an attribute starts with: its `KeyValue.key` (tag, length, text) and the tag of its
/// value, made at compile time, so each attribute's fixed part is one small copy.
const fn key_prefix<const N: usize>(key: &str) -> [u8; N] {
    let key = key.as_bytes();
    assert!(N == key.len() + 3 && key.len() < 0x80);
    let mut prefix = [0; N];
    prefix[0] = short_tag(field::KEY_VALUE_KEY);
    prefix[1] = key.len() as u8;
    let mut at = 0;
    while at < key.len() {
        prefix[2 + at] = key[at];
        at += 1;
    }
    prefix[N - 1] = short_tag(field::KEY_VALUE_VALUE);
    prefix
}

/// The [`key_prefix`] of an attribute key.
macro_rules! key {
    ($key:expr) => {{
        const PREFIX: [u8; $key.len() + 3] = key_prefix($key);
        &PREFIX
    }};
}

/// Which requests to encode for a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// An `ExportTraceServiceRequest`.
    pub spans: bool,
    /// An `ExportLogsServiceRequest`.
    pub logs: bool,
}

/// A batch's encoded requests, those that were wanted; each goes back to the encoder's pool
/// when dropped (once sent).
#[derive(Debug, Default)]
pub struct Requests {
    /// `ExportTraceServiceRequest` bytes.
    pub traces: Option<RequestBuffer>,
    /// `ExportLogsServiceRequest` bytes.
    pub logs: Option<RequestBuffer>,
}

/// Writes export requests for batches of calls, each under its resource and kspan's scope.
#[derive(Clone)]
pub struct CallEncoder {
    grouping: TraceGrouping,
    resources: Resources,
    /// kspan's own resource, encoded: every call's with [`ResourcePer::Host`].
    agent_resource: Vec<u8>,
    /// The attributes every process's resource shares, encoded as `Resource.attributes` items.
    shared_attributes: Vec<u8>,
    scope: Vec<u8>,
    /// Per signal number, its name as an `ArrayValue.values` item, for `signalfd.mask.signals`.
    signal_values: Vec<SignalValue>,
    /// Where requests are written, and return to once sent (shared by clones).
    buffers: Arc<RequestBuffers>,
}

impl CallEncoder {
    /// Encodes what every request repeats once: the scope, the resources' shared part and the
    /// signal names.
    pub fn new(
        grouping: TraceGrouping,
        resources: &Resources,
        scope: &InstrumentationScope,
    ) -> Self {
        let mut shared_attributes = Vec::new();
        for attribute in resources.shared() {
            bytes(
                &mut shared_attributes,
                field::RESOURCE_ATTRIBUTES,
                &attribute.encode_to_vec(),
            );
        }
        let signal_values = (0..=64).map(SignalValue::new).collect();
        Self {
            grouping,
            resources: resources.clone(),
            agent_resource: resources.agent().encode_to_vec(),
            shared_attributes,
            scope: scope.encode_to_vec(),
            signal_values,
            buffers: Arc::default(),
        }
    }

    /// An `ExportTraceServiceRequest` with one span per call.
    pub fn traces_request(&self, calls: &[Call]) -> Vec<u8> {
        let wanted = Wanted {
            spans: true,
            logs: false,
        };
        let traces = self.requests(calls, wanted).traces;
        traces.map(RequestBuffer::into_vec).unwrap_or_default()
    }

    /// An `ExportLogsServiceRequest` with one log record per call.
    pub fn logs_request(&self, calls: &[Call]) -> Vec<u8> {
        let wanted = Wanted {
            spans: false,
            logs: true,
        };
        let logs = self.requests(calls, wanted).logs;
        logs.map(RequestBuffer::into_vec).unwrap_or_default()
    }

    /// The wanted requests for a batch, written in one pass over the calls: what a call's span
    /// and log record share (its ids and attributes) is worked out once.
    pub fn requests(&self, calls: &[Call], wanted: Wanted) -> Requests {
        self.requests_observed_at(calls, wanted, unix_nanos(SystemTime::now()))
    }

    /// [`requests`](Self::requests), with log records observed at `observed` (ns since the
    /// UNIX epoch).
    pub(crate) fn requests_observed_at(
        &self,
        calls: &[Call],
        wanted: Wanted,
        observed: u64,
    ) -> Requests {
        // Sized for the batch's masks and names: growing a request means copying all of it.
        let variable: usize = calls
            .iter()
            .map(|call| variable_bytes(call) + call.thread_name.len() + call.process_name.len())
            .sum();
        let resources = 256 + self.shared_attributes.len() + self.agent_resource.len();
        let capacity = |per_call: usize| {
            resources * calls.len().min(16) + calls.len() * per_call + variable * 2
        };
        let mut batch = BatchWriter {
            traces: wanted
                .spans
                .then(|| self.buffers.take(capacity(SPAN_BYTES))),
            logs: wanted.logs.then(|| self.buffers.take(capacity(LOG_BYTES))),
            ids: RunIds::new(&self.grouping),
            attributes: AttributeBlock::default(),
            observed,
        };
        match self.resources.per() {
            ResourcePer::Host => self.resource_group(&mut batch, None, calls.iter()),
            ResourcePer::Process => {
                // By name too: a process whose name could not be read (it had exited) is
                // named by each calling thread, and each span must sit under its own name.
                fn process<'a>(call: &&'a Call) -> (u32, &'a Name, u64) {
                    (call.pid, &call.process_name, call.cgroup_id)
                }
                let mut by_process: Vec<&Call> = calls.iter().collect();
                by_process.sort_by(|a, b| process(a).cmp(&process(b)));
                for group in by_process.chunk_by(|a, b| process(a) == process(b)) {
                    self.resource_group(&mut batch, Some(group[0]), group.iter().copied());
                }
            }
        }
        let hand_out = |buf| self.buffers.hand_out(buf);
        Requests {
            traces: batch.traces.map(hand_out),
            logs: batch.logs.map(hand_out),
        }
    }

    /// One `ResourceSpans` and one `ResourceLogs`, as wanted: the resource (`process`'s, or
    /// kspan's own when `None`), the scope, then one span and one log record per call.
    fn resource_group<'a>(
        &self,
        batch: &mut BatchWriter,
        process: Option<&Call>,
        calls: impl ExactSizeIterator<Item = &'a Call>,
    ) {
        let expected = 256 + self.shared_attributes.len() + calls.len() * SPAN_BYTES.max(LOG_BYTES);
        let open = |buf: &mut Vec<u8>| {
            let resource_items = Open::new(buf, field::REQUEST_RESOURCE_ITEMS, expected);
            match process {
                Some(call) => self.process_resource(buf, call),
                None => bytes(buf, field::RESOURCE, &self.agent_resource),
            }
            let scope_items = Open::new(buf, field::SCOPE_ITEMS, expected);
            bytes(buf, field::SCOPE, &self.scope);
            [scope_items, resource_items]
        };
        let traces = batch.traces.as_mut().map(open);
        let logs = batch.logs.as_mut().map(open);
        for call in calls {
            let ids = batch.ids.ids(call);
            let error = call.error();
            batch
                .attributes
                .encode(call, error.as_deref(), &self.signal_values);
            if let Some(buf) = batch.traces.as_mut() {
                sized_message(buf, field::ITEMS, SPAN_BYTES, |buf| {
                    span(buf, call, ids, error.as_deref(), &batch.attributes);
                });
            }
            if let Some(buf) = batch.logs.as_mut() {
                sized_message(buf, field::ITEMS, LOG_BYTES, |buf| {
                    log_record(buf, call, ids, batch.observed, &batch.attributes);
                });
            }
        }
        let close = |buf: &mut Vec<u8>, opened: [Open; 2]| opened.map(|open| open.close(buf));
        if let (Some(buf), Some(opened)) = (batch.traces.as_mut(), traces) {
            close(buf, opened);
        }
        if let (Some(buf), Some(opened)) = (batch.logs.as_mut(), logs) {
            close(buf, opened);
        }
    }

    /// The resource of the process that made `call`: the shared attributes, then its own.
    fn process_resource(&self, buf: &mut Vec<u8>, call: &Call) {
        let expected = self.shared_attributes.len() + 128;
        sized_message(buf, field::RESOURCE, expected, |buf| {
            buf.extend_from_slice(&self.shared_attributes);
            let name = &call.process_name;
            let attributes = field::RESOURCE_ATTRIBUTES;
            let service = self.resources.service_name(name);
            resource_attribute(buf, attributes, attribute::SERVICE_NAME, |buf| {
                string(buf, service)
            });
            resource_attribute(buf, attributes, attribute::PROCESS_PID, |buf| {
                int(buf, call.pid.into())
            });
            resource_attribute(buf, attributes, attribute::PROCESS_EXECUTABLE_NAME, |buf| {
                string(buf, name)
            });
            let details = call.process_details.as_deref();
            if let Some(path) = details.and_then(|d| d.executable_path.as_deref()) {
                resource_attribute(buf, attributes, attribute::PROCESS_EXECUTABLE_PATH, |buf| {
                    string(buf, path)
                });
            }
            if let Some(line) = details.and_then(|d| d.command_line.as_deref()) {
                resource_attribute(buf, attributes, attribute::PROCESS_COMMAND_LINE, |buf| {
                    string(buf, line)
                });
            }
            let cgroup = call.cgroup.as_deref().and_then(CgroupLookup::cgroup);
            if let Some(identity) = cgroup.map(|cgroup| &cgroup.identity) {
                container_attributes(buf, attributes, identity);
            }
        });
    }
}

/// The container and pod a process runs in, on its resource (semantic conventions' names).
fn container_attributes(buf: &mut Vec<u8>, field: u32, identity: &ContainerIdentity) {
    if let Some(id) = &identity.container_id {
        resource_attribute(buf, field, "container.id", |buf| string(buf, id));
    }
    if let Some(runtime) = identity.runtime {
        resource_attribute(buf, field, "container.runtime.name", |buf| {
            string(buf, runtime.name())
        });
    }
    if let Some(uid) = &identity.pod_uid {
        resource_attribute(buf, field, "k8s.pod.uid", |buf| string(buf, uid));
    }
}

/// About what a call's own values take beyond the fixed estimates: a mask's signal names, a
/// declared call's strings and keys.
fn variable_bytes(call: &Call) -> usize {
    match &call.detail {
        CallDetail::Signalfd(call) => call.mask.0.count_ones() as usize * SignalValue::AVERAGE_LEN,
        CallDetail::Declared(call) => call
            .probe
            .arguments
            .iter()
            .zip(&call.values)
            .map(|(argument, value)| {
                let text = match value {
                    ArgValue::String { text, .. } => text.len(),
                    _ => 10,
                };
                2 * argument.attribute.len() + text + 16
            })
            .sum(),
    }
}

/// About what one span takes besides its mask's signal names and its thread and process names
/// (those twice: as attributes, and in the log record's summary), and its length varint then
/// needs two bytes, as it does for 128 to 16,383 bytes.
const SPAN_BYTES: usize = 480;
/// A log record: the span's attributes and a summary line.
const LOG_BYTES: usize = 600;

/// A signal's name as an `ArrayValue.values` item, in a fixed-size block: copying a constant
/// size is a few moves, where a slice of any length costs a call to `memcpy`.
#[derive(Clone)]
struct SignalValue {
    block: [u8; SignalValue::BLOCK],
    len: usize,
}

impl SignalValue {
    /// The longest item, `SIGRTMIN+15` with its two tags and lengths, fits.
    const BLOCK: usize = 16;
    /// About what an item takes (`SIGUSR1`, `SIGRTMAX-3`).
    const AVERAGE_LEN: usize = 12;

    fn new(signo: i32) -> Self {
        let mut item = Vec::new();
        message(&mut item, field::ARRAY_VALUES, |item| {
            bytes(item, field::ANY_STRING, signal_name(signo).as_bytes());
        });
        // Signal names are kspan's own fixed set (`signal_name`): one that does not fit is a
        // bug every encoder test meets at once.
        assert!(
            item.len() <= Self::BLOCK,
            "signal {signo}: item of {} bytes",
            item.len()
        );
        let mut block = [0; Self::BLOCK];
        block[..item.len()].copy_from_slice(&item);
        Self {
            block,
            len: item.len(),
        }
    }

    #[inline]
    fn write(&self, buf: &mut Vec<u8>) {
        let end = buf.len() + self.len;
        buf.extend_from_slice(&self.block);
        buf.truncate(end);
    }
}

/// The requests of one batch being written, and what their calls share.
struct BatchWriter<'a> {
    traces: Option<Vec<u8>>,
    logs: Option<Vec<u8>>,
    ids: RunIds<'a>,
    /// The current call's attributes.
    attributes: AttributeBlock,
    /// When the log records were observed.
    observed: u64,
}

/// The call's span: INTERNAL, timed by the kernel, ERROR with the errno name on failure.
fn span(
    buf: &mut Vec<u8>,
    call: &Call,
    ids: CallIds,
    error: Option<&str>,
    attributes: &AttributeBlock,
) {
    bytes(buf, field::SPAN_TRACE_ID, &ids.trace.to_bytes());
    bytes(buf, field::SPAN_SPAN_ID, &ids.span.to_bytes());
    if let Some(parent) = ids.parent {
        bytes(buf, field::SPAN_PARENT_SPAN_ID, &parent.to_bytes());
    }
    bytes(buf, field::SPAN_NAME, call.name().as_bytes());
    varint(buf, field::SPAN_KIND, SPAN_KIND_INTERNAL);
    fixed64(buf, field::SPAN_START, unix_nanos(call.start));
    fixed64(buf, field::SPAN_END, unix_nanos(call.end));
    attributes.write(buf, field::SPAN_ATTRIBUTES);
    if let Some(errno) = error {
        message(buf, field::SPAN_STATUS, |buf| {
            bytes(buf, field::STATUS_MESSAGE, errno.as_bytes());
            varint(buf, field::STATUS_CODE, STATUS_CODE_ERROR);
        });
    }
    fixed32(buf, field::SPAN_FLAGS, SAMPLED);
}

/// The call's log record, in the same trace and span: INFO on success, WARN on error.
fn log_record(
    buf: &mut Vec<u8>,
    call: &Call,
    ids: CallIds,
    observed: u64,
    attributes: &AttributeBlock,
) {
    let (severity, text) = match call.error() {
        None => (SEVERITY_INFO, "INFO"),
        Some(_) => (SEVERITY_WARN, "WARN"),
    };
    fixed64(buf, field::LOG_TIME, unix_nanos(call.end));
    varint(buf, field::LOG_SEVERITY_NUMBER, severity);
    bytes(buf, field::LOG_SEVERITY_TEXT, text.as_bytes());
    // Room for the length of a summary naming the mask's signals or the strings.
    let expected = 64 + variable_bytes(call);
    sized_message(buf, field::LOG_BODY, expected, |buf| {
        sized_message(buf, field::ANY_STRING, expected, |buf| {
            // Writing to a Vec cannot fail.
            let _ = call.write_summary(&mut Utf8(buf));
        });
    });
    attributes.write(buf, field::LOG_ATTRIBUTES);
    fixed32(buf, field::LOG_FLAGS, SAMPLED);
    bytes(buf, field::LOG_TRACE_ID, &ids.trace.to_bytes());
    bytes(buf, field::LOG_SPAN_ID, &ids.span.to_bytes());
    fixed64(buf, field::LOG_OBSERVED_TIME, observed);
    bytes(buf, field::LOG_EVENT_NAME, call.event_name().as_bytes());
}

/// A call's attributes, encoded once and copied into its span and its log record: the same
/// `KeyValue` items, only the list's field number differs, so each item's tag byte is left
/// open and set as the block is copied.
#[derive(Default)]
struct AttributeBlock {
    bytes: Vec<u8>,
    /// Where each item's tag byte is.
    tags: Vec<usize>,
}

impl AttributeBlock {
    /// The attributes shared by a call's span and log record (`error`: the call's errno name).
    fn encode(&mut self, call: &Call, error: Option<&str>, signal_values: &[SignalValue]) {
        self.bytes.clear();
        self.tags.clear();
        self.attribute(key!(attribute::PROCESS_PID), |buf| {
            int(buf, call.pid.into())
        });
        self.attribute(key!(attribute::THREAD_ID), |buf| int(buf, call.tid.into()));
        self.attribute(key!(attribute::THREAD_NAME), |buf| {
            bytes(buf, field::ANY_STRING, call.thread_name.as_bytes())
        });
        self.attribute(key!(attribute::PROCESS_EXECUTABLE_NAME), |buf| {
            bytes(buf, field::ANY_STRING, call.process_name.as_bytes())
        });
        self.attribute(key!(attribute::PROCESS_USER_ID), |buf| {
            int(buf, call.euid.into())
        });
        self.attribute(key!(attribute::PROCESS_REAL_USER_ID), |buf| {
            int(buf, call.uid.into())
        });
        match &call.detail {
            CallDetail::Signalfd(signalfd) => self.signalfd(signalfd, signal_values),
            CallDetail::Declared(declared) => self.declared_arguments(declared),
        }
        self.attribute(key!("kspan.probe"), |buf| string(buf, call.probe_name()));
        self.attribute(key!("kspan.cgroup.id"), |buf| {
            int(buf, call.cgroup_id as i64)
        });
        if let Some(lookup) = call.cgroup.as_deref() {
            match (lookup.cgroup(), lookup.unresolved_reason()) {
                (Some(cgroup), _) => {
                    self.attribute(key!("kspan.cgroup.path"), |buf| string(buf, &cgroup.path))
                }
                (None, Some(reason)) => {
                    self.attribute(key!("kspan.cgroup.unresolved"), |buf| string(buf, reason))
                }
                (None, None) => {}
            }
        }
        match (&call.detail, error) {
            (_, Some(errno)) => {
                self.attribute(key!(attribute::ERROR_TYPE), |buf| string(buf, errno))
            }
            (CallDetail::Signalfd(signalfd), None) => {
                if let Some(fd) = signalfd.fd() {
                    self.attribute(key!("signalfd.fd"), |buf| int(buf, fd.into()));
                }
            }
            (CallDetail::Declared(declared), None) => {
                if let Some(value) = declared.result_value() {
                    let key = &declared.probe.result_attribute;
                    self.keyed_attribute(key, |buf| int(buf, value));
                }
            }
        }
    }

    /// A signalfd call's arguments.
    fn signalfd(&mut self, call: &SignalfdCall, signal_values: &[SignalValue]) {
        self.attribute(key!("signalfd.ufd"), |buf| int(buf, call.ufd.into()));
        self.attribute(key!("signalfd.operation"), |buf| {
            string(buf, call.operation())
        });
        self.attribute(key!("signalfd.flags"), |buf| int(buf, call.flags.into()));
        self.attribute(key!("signalfd.flags.names"), |buf| {
            array(buf, |buf| {
                for name in flag_names(call.flags) {
                    message(buf, field::ARRAY_VALUES, |buf| {
                        bytes(buf, field::ANY_STRING, name.as_bytes());
                    });
                }
            });
        });
        let mask = mask_hex(call.mask.0);
        self.attribute(key!("signalfd.mask"), |buf| {
            bytes(buf, field::ANY_STRING, &mask)
        });
        let signals = call.mask.0.count_ones() as usize;
        let expected = 3 + signals * SignalValue::AVERAGE_LEN;
        self.sized_attribute(key!("signalfd.mask.signals"), expected, |buf| {
            sized_message(buf, field::ANY_ARRAY, expected, |buf| {
                for signo in call.mask.signals() {
                    signal_values[signo as usize].write(buf);
                }
            });
        });
        self.attribute(key!("signalfd.mask.source"), |buf| {
            string(buf, call.mask_source_name())
        });
    }

    /// A declared call's arguments, each under its declared key; a decoded one adds its
    /// names as `<key>.names`, a string its marks.
    fn declared_arguments(&mut self, call: &DeclaredCall) {
        let mut key = String::new();
        for (argument, value) in call.probe.arguments.iter().zip(&call.values) {
            let attribute = argument.attribute.as_str();
            match value {
                ArgValue::Int(value) => {
                    self.keyed_attribute(attribute, |buf| int(buf, *value));
                    if let Some(decoder) = argument.decoder {
                        suffixed(&mut key, attribute, ".names");
                        self.keyed_attribute(&key, |buf| {
                            array(buf, |buf| {
                                for name in decoder.names(*value) {
                                    message(buf, field::ARRAY_VALUES, |buf| {
                                        bytes(buf, field::ANY_STRING, name.as_bytes());
                                    });
                                }
                            });
                        });
                    }
                }
                ArgValue::String { text, truncated } => {
                    self.keyed_attribute(attribute, |buf| string(buf, text));
                    if *truncated {
                        suffixed(&mut key, attribute, ".truncated");
                        self.keyed_attribute(&key, |buf| boolean(buf, true));
                    }
                }
                ArgValue::Unreadable => {
                    suffixed(&mut key, attribute, ".unreadable");
                    self.keyed_attribute(&key, |buf| boolean(buf, true));
                }
            }
        }
    }

    /// One `KeyValue` item whose key is known only at run time (a declared probe's).
    fn keyed_attribute(&mut self, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
        self.tags.push(self.bytes.len());
        let buf = &mut self.bytes;
        buf.push(0);
        let item = Open::at(buf, key.len() + 16);
        bytes(buf, field::KEY_VALUE_KEY, key.as_bytes());
        message(buf, field::KEY_VALUE_VALUE, value);
        item.close(buf);
    }

    /// One `KeyValue` item: its tag left open, its key from `prefix`, then its value.
    #[inline]
    fn attribute<const N: usize>(&mut self, prefix: &[u8; N], value: impl FnOnce(&mut Vec<u8>)) {
        self.sized_attribute(prefix, 0, value);
    }

    /// An attribute whose value takes about `expected` bytes: room is left for lengths that
    /// size, so a long value (a mask's signal names) is not moved to fit them.
    #[inline]
    fn sized_attribute<const N: usize>(
        &mut self,
        prefix: &[u8; N],
        expected: usize,
        value: impl FnOnce(&mut Vec<u8>),
    ) {
        self.tags.push(self.bytes.len());
        let buf = &mut self.bytes;
        buf.push(0);
        let item = Open::at(buf, expected + N + 2);
        buf.extend_from_slice(prefix);
        let value_at = Open::at(buf, expected);
        value(buf);
        value_at.close(buf);
        item.close(buf);
    }

    /// Copies the items into `buf` as the repeated attributes `field`.
    fn write(&self, buf: &mut Vec<u8>, field: u32) {
        let start = buf.len();
        buf.extend_from_slice(&self.bytes);
        let tag = short_tag(field);
        for &at in &self.tags {
            buf[start + at] = tag;
        }
    }
}

/// An `AnyValue` holding an integer.
fn int(buf: &mut Vec<u8>, value: i64) {
    varint(buf, field::ANY_INT, value as u64);
}

/// `key` = `base` + `suffix`, reusing its buffer.
fn suffixed(key: &mut String, base: &str, suffix: &str) {
    key.clear();
    key.push_str(base);
    key.push_str(suffix);
}

/// An `AnyValue` holding a bool.
fn boolean(buf: &mut Vec<u8>, value: bool) {
    varint(buf, field::ANY_BOOL, u64::from(value));
}

/// An `AnyValue` holding a string.
fn string(buf: &mut Vec<u8>, value: &str) {
    bytes(buf, field::ANY_STRING, value.as_bytes());
}

/// An `AnyValue` holding an array whose items `values` writes.
fn array(buf: &mut Vec<u8>, values: impl FnOnce(&mut Vec<u8>)) {
    message(buf, field::ANY_ARRAY, values);
}

/// A resource attribute: written once per process and batch, so built from its key at run time.
fn resource_attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
    message(buf, field, |buf| {
        bytes(buf, field::KEY_VALUE_KEY, key.as_bytes());
        message(buf, field::KEY_VALUE_VALUE, value);
    });
}

/// Text written with `write!` straight into a request.
struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    #[inline]
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// `0x` and 16 hex digits, as ASCII bytes: written as they are, with no UTF-8 check per call.
fn mask_hex(mask: u64) -> [u8; 18] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0; 18];
    out[..2].copy_from_slice(b"0x");
    for (i, digit) in out[2..].iter_mut().enumerate() {
        *digit = DIGITS[((mask >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

#[inline]
fn key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    push_varint(buf, u64::from(field << 3 | wire_type));
}

#[inline]
fn varint(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, VARINT);
    push_varint(buf, value);
}

/// A protobuf varint, pushed byte by byte (prost's generic `encode_varint` goes through
/// `BufMut`; this is most of what a request's keys and lengths cost).
#[inline]
fn push_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

#[inline]
fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    key(buf, field, FIXED64);
    buf.extend_from_slice(&value.to_le_bytes());
}

#[inline]
fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    key(buf, field, FIXED32);
    buf.extend_from_slice(&value.to_le_bytes());
}

#[inline]
fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(buf, field, LENGTH_DELIMITED);
    push_varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// A nested message, written in place after a one-byte length, which fits the small ones
/// (attributes, values); a body of 128 bytes or more is moved up to make room for its length.
#[inline]
fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, LENGTH_DELIMITED);
    let length_at = buf.len();
    buf.push(0);
    body(buf);
    fit_length(buf, length_at, 1, buf.len() - length_at - 1);
}

/// A nested message written in place: room is left for the length varint of a body of about
/// `expected` bytes, and the body is moved only when its length needs a varint of another size.
#[inline]
fn sized_message(buf: &mut Vec<u8>, field: u32, expected: usize, body: impl FnOnce(&mut Vec<u8>)) {
    let open = Open::new(buf, field, expected);
    body(buf);
    open.close(buf);
}

/// A nested message being written in place, whose length is written when it is closed.
struct Open {
    length_at: usize,
    reserved: usize,
}

impl Open {
    /// Writes the field's key and leaves room for the length of a body of about `expected`
    /// bytes.
    #[inline]
    fn new(buf: &mut Vec<u8>, field: u32, expected: usize) -> Self {
        key(buf, field, LENGTH_DELIMITED);
        Self::at(buf, expected)
    }

    /// Leaves room for the length of a body of about `expected` bytes, its key written.
    #[inline]
    fn at(buf: &mut Vec<u8>, expected: usize) -> Self {
        let length_at = buf.len();
        let reserved = encoded_len_varint(expected as u64);
        buf.resize(length_at + reserved, 0);
        Self {
            length_at,
            reserved,
        }
    }

    /// Ends the message at the end of `buf`.
    #[inline]
    fn close(self, buf: &mut Vec<u8>) {
        let length = buf.len() - self.length_at - self.reserved;
        fit_length(buf, self.length_at, self.reserved, length);
    }
}

/// Writes the length of the `length`-byte body that follows `reserved` bytes at `length_at`,
/// moving the body if the varint needs another number of bytes.
#[inline]
fn fit_length(buf: &mut Vec<u8>, length_at: usize, reserved: usize, length: usize) {
    // Most messages are small ones with a byte reserved, or were given room enough.
    if reserved == 1 && length < 0x80 {
        buf[length_at] = length as u8;
    } else if reserved == 2 && (0x80..0x4000).contains(&length) {
        buf[length_at] = length as u8 | 0x80;
        buf[length_at + 1] = (length >> 7) as u8;
    } else {
        refit_length(buf, length_at, reserved, length);
    }
}

/// [`fit_length`] for any length and room, moving the body when the room does not fit.
#[cold]
#[inline(never)]
fn refit_length(buf: &mut Vec<u8>, length_at: usize, reserved: usize, length: usize) {
    let start = length_at + reserved;
    let size = encoded_len_varint(length as u64);
    if size != reserved {
        if size > reserved {
            buf.resize(buf.len() + size - reserved, 0);
        }
        buf.copy_within(start..start + length, length_at + size);
        buf.truncate(length_at + size + length);
    }
    let mut length = length as u64;
    for byte in &mut buf[length_at..length_at + size] {
        // Every byte but the last has the continuation bit set.
        *byte = length as u8 & 0x7f | if length >= 0x80 { 0x80 } else { 0 };
        length >>= 7;
    }
}

/// An OTLP key-value pair, for the few messages built as structs (resource, metrics).
pub fn key_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// Nanoseconds since the UNIX epoch (0 before it, which the kernel clock cannot produce).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry_proto::tonic::{
        collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
        common::v1::ArrayValue,
        logs::v1::{LogRecord, SeverityNumber},
        trace::v1::{span::SpanKind, status::StatusCode, Span, Status},
    };

    use std::sync::Arc;

    use kspan_common::{MaskSource, ProbeKind, Syscall};
    use kspan_decode::{
        test_support::{sample_call, sample_declared_call, with_signalfd},
        ArgValue, CallDetail, ProcessDetails, SignalMask, SignalfdCall,
    };

    use super::*;
    use crate::prost_baseline::ProstBaseline;

    fn encoder_per(per: ResourcePer) -> CallEncoder {
        let host = crate::HostInfo {
            host_name: "node-1".into(),
            host_id: None,
            kernel_release: "6.1.0".into(),
            os_name: None,
        };
        let resources = Resources::new(&host, per, "instance-1".into(), vec![], None);
        let scope = InstrumentationScope {
            name: "kspan".into(),
            ..InstrumentationScope::default()
        };
        CallEncoder::new(
            TraceGrouping::new("boot", Duration::from_secs(60)),
            &resources,
            &scope,
        )
    }

    fn encoder() -> CallEncoder {
        encoder_per(ResourcePer::Host)
    }

    fn spans(calls: &[Call]) -> (ExportTraceServiceRequest, Vec<Span>) {
        let bytes = encoder().traces_request(calls);
        let request = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("valid protobuf");
        let spans = request.resource_spans[0].scope_spans[0].spans.clone();
        (request, spans)
    }

    fn logs(calls: &[Call]) -> Vec<LogRecord> {
        let bytes = encoder().logs_request(calls);
        let request = ExportLogsServiceRequest::decode(bytes.as_slice()).expect("valid protobuf");
        request.resource_logs[0].scope_logs[0].log_records.clone()
    }

    fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn text(value: &str) -> any_value::Value {
        any_value::Value::StringValue(value.to_string())
    }

    fn texts(values: &[&str]) -> any_value::Value {
        any_value::Value::ArrayValue(ArrayValue {
            values: values
                .iter()
                .map(|value| AnyValue {
                    value: Some(text(value)),
                })
                .collect(),
        })
    }

    #[test]
    fn the_container_and_pod_go_on_the_process_resource_and_the_cgroup_path_on_the_span() {
        use kspan_decode::cgroup::{Cgroup, ContainerRuntime};
        use std::sync::Arc;
        let id = "ab".repeat(32);
        let uid = "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809";
        let in_container = Arc::new(CgroupLookup::Found(Cgroup {
            path: format!("/kubepods/pod{uid}/crio-{id}"),
            identity: ContainerIdentity {
                container_id: Some(id.clone()),
                runtime: Some(ContainerRuntime::CriO),
                pod_uid: Some(uid.to_string()),
            },
        }));
        let on_host = Arc::new(CgroupLookup::Found(Cgroup {
            path: "/system.slice/cron.service".into(),
            identity: ContainerIdentity::default(),
        }));
        let call = |cgroup_id: u64, cgroup: &Arc<CgroupLookup>| Call {
            cgroup_id,
            cgroup: Some(cgroup.clone()),
            ..sample_call()
        };
        // One process moved from the host into a container, and a call whose cgroup was gone.
        let calls = [
            call(40, &on_host),
            call(41, &in_container),
            call(42, &Arc::new(CgroupLookup::NotFound)),
        ];
        let request = ExportTraceServiceRequest::decode(
            encoder_per(ResourcePer::Process)
                .traces_request(&calls)
                .as_slice(),
        )
        .unwrap();
        let keys = [
            "container.id",
            "container.runtime.name",
            "k8s.pod.uid",
            "kspan.cgroup.id",
            "kspan.cgroup.path",
            "kspan.cgroup.unresolved",
        ];
        let seen: Vec<(Vec<String>, Vec<String>)> = request
            .resource_spans
            .iter()
            .map(|r| {
                let shown = |attributes: &[KeyValue]| {
                    keys.iter()
                        .filter_map(|key| Some(format!("{key}={:?}", attribute(attributes, key)?)))
                        .collect::<Vec<_>>()
                };
                let resource = shown(&r.resource.as_ref().unwrap().attributes);
                assert_eq!(r.scope_spans[0].spans.len(), 1);
                (resource, shown(&r.scope_spans[0].spans[0].attributes))
            })
            .collect();
        let strings = |items: &[String]| items.to_vec();
        assert_eq!(
            seen,
            [
                (
                    vec![],
                    strings(&[
                        "kspan.cgroup.id=IntValue(40)".into(),
                        format!("kspan.cgroup.path={:?}", text("/system.slice/cron.service")),
                    ])
                ),
                (
                    strings(&[
                        format!("container.id={:?}", text(&id)),
                        format!("container.runtime.name={:?}", text("cri-o")),
                        format!("k8s.pod.uid={:?}", text(uid)),
                    ]),
                    strings(&[
                        "kspan.cgroup.id=IntValue(41)".into(),
                        format!(
                            "kspan.cgroup.path={:?}",
                            text(&format!("/kubepods/pod{uid}/crio-{id}"))
                        ),
                    ])
                ),
                (
                    vec![],
                    strings(&[
                        "kspan.cgroup.id=IntValue(42)".into(),
                        format!("kspan.cgroup.unresolved={:?}", text("not_found")),
                    ])
                ),
            ]
        );
    }

    #[test]
    fn request_carries_resource_scope_and_every_call() {
        // 100 spans: the containers' lengths need three-byte varints.
        let calls = vec![sample_call(); 100];
        let (request, spans) = spans(&calls);
        let resource_spans = &request.resource_spans[0];
        assert_eq!(
            attribute(
                &resource_spans.resource.as_ref().unwrap().attributes,
                "service.name"
            ),
            Some(&text("kspan"))
        );
        assert_eq!(
            resource_spans.scope_spans[0].scope.as_ref().unwrap().name,
            "kspan"
        );
        assert_eq!(spans.len(), 100);
        assert!(spans.iter().all(|span| span.name == "signalfd4"));
    }

    #[test]
    fn a_resource_per_process_groups_the_calls_in_their_order() {
        let call = |pid: u32, name: &str, ufd: i32| {
            let mut call = sample_call();
            call.pid = pid;
            call.process_name = name.into();
            if let Some(signalfd) = call.signalfd_mut() {
                signalfd.ufd = ufd;
            }
            call
        };
        // Interleaved, and with a batch long enough for multi-byte lengths everywhere.
        let mut calls = Vec::new();
        for ufd in 0..60 {
            calls.push(call(30, "nginx", ufd));
            calls.push(call(7, "sshd", ufd));
        }
        calls.push(call(30, "nginx", 60));
        let encoder = encoder_per(ResourcePer::Process);
        let traces =
            ExportTraceServiceRequest::decode(encoder.traces_request(&calls).as_slice()).unwrap();
        let logs =
            ExportLogsServiceRequest::decode(encoder.logs_request(&calls).as_slice()).unwrap();
        let resource = |attributes: &[KeyValue]| {
            [
                "service.name",
                "process.pid",
                "process.executable.name",
                "host.name",
                "telemetry.distro.name",
            ]
            .map(|key| format!("{:?}", attribute(attributes, key)))
            .join(" ")
        };
        let by_resource: Vec<(String, Vec<i64>)> = traces
            .resource_spans
            .iter()
            .map(|r| {
                let ufds = r.scope_spans[0]
                    .spans
                    .iter()
                    .map(|span| match attribute(&span.attributes, "signalfd.ufd") {
                        Some(any_value::Value::IntValue(ufd)) => *ufd,
                        other => panic!("ufd {other:?}"),
                    })
                    .collect();
                (resource(&r.resource.as_ref().unwrap().attributes), ufds)
            })
            .collect();
        let process = |pid: i64, name: &str| {
            format!(
                "{:?} {:?} {:?} {:?} {:?}",
                Some(text(name)),
                Some(any_value::Value::IntValue(pid)),
                Some(text(name)),
                Some(text("node-1")),
                Some(text("kspan"))
            )
        };
        assert_eq!(
            by_resource,
            [
                (process(7, "sshd"), (0..60).collect()),
                (process(30, "nginx"), (0..61).collect()),
            ]
        );
        let log_groups: Vec<(String, usize)> = logs
            .resource_logs
            .iter()
            .map(|r| {
                (
                    resource(&r.resource.as_ref().unwrap().attributes),
                    r.scope_logs[0].log_records.len(),
                )
            })
            .collect();
        assert_eq!(
            log_groups,
            [(process(7, "sshd"), 60), (process(30, "nginx"), 61)]
        );
    }

    #[test]
    fn successful_call_span() {
        let call = sample_call();
        let span = spans(std::slice::from_ref(&call)).1.remove(0);
        assert_eq!(span.name, "signalfd4");
        assert_eq!(span.kind, i32::from(SpanKind::Internal));
        assert_eq!(span.flags, SAMPLED);
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (unix_nanos(call.start), unix_nanos(call.end))
        );
        assert_eq!(span.status, None);
        let attrs = &span.attributes;
        let int = |value| Some(any_value::Value::IntValue(value));
        assert_eq!(attribute(attrs, "process.pid").cloned(), int(100));
        assert_eq!(attribute(attrs, "thread.id").cloned(), int(101));
        assert_eq!(attribute(attrs, "thread.name"), Some(&text("worker")));
        assert_eq!(attribute(attrs, "signalfd.ufd").cloned(), int(-1));
        assert_eq!(attribute(attrs, "signalfd.fd").cloned(), int(5));
        assert_eq!(attribute(attrs, "error.type"), None);
        assert_eq!(
            attribute(attrs, "signalfd.operation"),
            Some(&text("create"))
        );
        assert_eq!(
            attribute(attrs, "signalfd.mask"),
            Some(&text("0x0000000000000202"))
        );
        assert_eq!(
            attribute(attrs, "signalfd.mask.signals"),
            Some(&texts(&["SIGINT", "SIGUSR1"]))
        );
        assert_eq!(
            attribute(attrs, "signalfd.flags.names"),
            Some(&texts(&["SFD_CLOEXEC"]))
        );
        assert_eq!(attribute(attrs, "kspan.probe"), Some(&text("tracepoint")));
    }

    #[test]
    fn failed_call_span_is_an_error_without_fd() {
        let call = with_signalfd(|call| {
            call.ret = -libc::EBADF;
            call.ufd = 42;
            call.flags = 0;
        });
        let span = spans(&[call]).1.remove(0);
        assert_eq!(
            span.status,
            Some(Status {
                message: "EBADF".into(),
                code: StatusCode::Error.into()
            })
        );
        assert_eq!(
            attribute(&span.attributes, "error.type"),
            Some(&text("EBADF"))
        );
        assert_eq!(attribute(&span.attributes, "signalfd.fd"), None);
        assert_eq!(
            attribute(&span.attributes, "signalfd.flags.names"),
            Some(&texts(&[]))
        );
    }

    #[test]
    fn the_user_id_is_the_effective_one_and_the_real_one_is_apart() {
        let call = Call {
            uid: 1000,
            euid: 0,
            ..sample_call()
        };
        let span = spans(&[call]).1.remove(0);
        let int = |value| Some(any_value::Value::IntValue(value));
        assert_eq!(
            attribute(&span.attributes, "process.user.id").cloned(),
            int(0)
        );
        assert_eq!(
            attribute(&span.attributes, "process.real_user.id").cloned(),
            int(1000)
        );
    }

    #[test]
    fn a_declared_call_has_its_arguments_marks_names_and_result() {
        let call = sample_declared_call();
        let span = spans(std::slice::from_ref(&call)).1.remove(0);
        let attrs = &span.attributes;
        let int = |value| Some(any_value::Value::IntValue(value));
        assert_eq!(span.name, "openat");
        assert_eq!(attribute(attrs, "openat.dfd").cloned(), int(-100));
        assert_eq!(
            attribute(attrs, "openat.filename"),
            Some(&text("/etc/hosts"))
        );
        assert_eq!(
            attribute(attrs, "openat.flags").cloned(),
            int((libc::O_RDONLY | libc::O_CLOEXEC).into())
        );
        assert_eq!(
            attribute(attrs, "openat.flags.names"),
            Some(&texts(&["O_RDONLY", "O_CLOEXEC"]))
        );
        assert_eq!(attribute(attrs, "openat.result").cloned(), int(3));
        assert_eq!(attribute(attrs, "openat.filename.truncated"), None);
        assert_eq!(span.status, None);
        assert!(span.parent_span_id.is_empty());
        let record = logs(std::slice::from_ref(&call)).remove(0);
        assert_eq!(record.event_name, "openat.call");
        assert_eq!(
            record.body.and_then(|body| body.value),
            Some(text(
                r#"openat(dfd=-100, filename="/etc/hosts", flags=O_RDONLY|O_CLOEXEC, mode=0) = 3"#
            ))
        );

        let mut failed = call;
        if let CallDetail::Declared(declared) = &mut failed.detail {
            declared.ret = -i64::from(libc::ENOENT);
            declared.values[1] = ArgValue::Unreadable;
        }
        let span = spans(&[failed]).1.remove(0);
        let attrs = &span.attributes;
        let flag = Some(any_value::Value::BoolValue(true));
        assert_eq!(attribute(attrs, "openat.filename"), None);
        assert_eq!(
            attribute(attrs, "openat.filename.unreadable").cloned(),
            flag
        );
        assert_eq!(attribute(attrs, "openat.result"), None);
        assert_eq!(attribute(attrs, "error.type"), Some(&text("ENOENT")));
        assert_eq!(
            span.status.map(|status| status.message).as_deref(),
            Some("ENOENT")
        );
    }

    #[test]
    fn log_record_shares_the_span_ids() {
        let call = with_signalfd(|call| call.ret = -libc::EINVAL);
        let record = logs(std::slice::from_ref(&call)).remove(0);
        let span = spans(&[call]).1.remove(0);
        assert_eq!(record.trace_id, span.trace_id);
        assert_eq!(record.span_id, span.span_id);
        assert_eq!((record.trace_id.len(), record.span_id.len()), (16, 8));
        assert_eq!(record.severity_number, i32::from(SeverityNumber::Warn));
        assert_eq!(record.severity_text, "WARN");
        assert_eq!(record.event_name, "signalfd.call");
        assert_eq!(record.time_unix_nano, span.end_time_unix_nano);
        assert!(record.observed_time_unix_nano > 0);
        assert_eq!(
            record.body.and_then(|body| body.value),
            Some(text(
                "signalfd4(ufd=-1, mask=[SIGINT,SIGUSR1], flags=SFD_CLOEXEC) = -1 EINVAL"
            ))
        );
        assert_eq!(record.attributes, span.attributes);
    }

    /// A batch that takes every branch of the encoder: several processes (two sharing a pid
    /// under different names), every syscall, probe and mask source, errors and an fd, empty,
    /// full and random masks, unknown flag bits, process details, long names whose lengths need
    /// two-byte varints, and two trace windows.
    fn varied_batch() -> Vec<Call> {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let details = Arc::new(ProcessDetails {
            executable_path: Some("/usr/sbin/nginx".into()),
            command_line: Some(format!("nginx -g daemon off; {}", "x".repeat(200))),
        });
        (0..300u64)
            .map(|i| {
                let at = start + Duration::from_millis(i * 300);
                let (pid, name) =
                    [(30, "nginx"), (7, "sshd"), (7, "sshd-session"), (4000, "w")][i as usize % 4];
                let signalfd = CallDetail::Signalfd(SignalfdCall {
                    syscall: [Syscall::Signalfd, Syscall::Signalfd4, Syscall::Unknown]
                        [i as usize % 3],
                    mask_source: [
                        MaskSource::Kernel,
                        MaskSource::User,
                        MaskSource::NotRead,
                        MaskSource::Unreadable,
                    ][i as usize % 4],
                    ufd: [-1, 3, i32::MAX][i as usize % 3],
                    flags: [
                        0,
                        libc::SFD_CLOEXEC,
                        libc::SFD_NONBLOCK | 0x4000_0000,
                        i32::MIN,
                    ][i as usize % 4],
                    mask: SignalMask(match i % 5 {
                        0 => 0,
                        1 => u64::MAX,
                        _ => i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 48),
                    }),
                    ret: [5, -libc::EINVAL, -libc::EBADF, i32::MIN, 0][i as usize % 5],
                });
                Call {
                    probe: [ProbeKind::Kprobe, ProbeKind::Fentry, ProbeKind::Tracepoint]
                        [i as usize % 3],
                    pid,
                    tid: pid + (i % 3) as u32,
                    uid: (i % 2) as u32 * 1000,
                    euid: (i % 3) as u32 * 1000,
                    cgroup_id: u64::from(pid) * 0x0123_4567_89ab,
                    // A process in a container, one whose cgroup vanished.
                    cgroup: match pid {
                        30 => Some(std::sync::Arc::new(CgroupLookup::Found(
                            kspan_decode::cgroup::Cgroup {
                                path: format!("/docker/{}", "c0".repeat(32)),
                                identity: ContainerIdentity {
                                    container_id: Some("c0".repeat(32)),
                                    runtime: Some(kspan_decode::cgroup::ContainerRuntime::Docker),
                                    pod_uid: None,
                                },
                            },
                        ))),
                        7 => Some(std::sync::Arc::new(CgroupLookup::NotFound)),
                        _ => None,
                    },
                    process_name: name.into(),
                    process_details: (pid == 30).then(|| details.clone()),
                    thread_name: if i % 7 == 0 {
                        "t".repeat(150).as_str().into()
                    } else {
                        format!("worker-{}", i % 5).as_str().into()
                    },
                    start: at,
                    end: at + Duration::from_nanos(900 + i),
                    detail: if i % 4 == 3 {
                        declared_detail(i, at)
                    } else {
                        signalfd
                    },
                }
            })
            .collect()
    }

    /// A declared `openat` for the varied batch: every value kind, errors, and calls made
    /// inside another (a parent, in the previous trace window for some).
    fn declared_detail(i: u64, at: SystemTime) -> CallDetail {
        let CallDetail::Declared(mut call) = sample_declared_call().detail else {
            unreachable!("the sample declared call is declared");
        };
        call.values[1] = match i % 3 {
            0 => ArgValue::String {
                text: format!("/var/lib/{}", "d".repeat(i as usize)),
                truncated: i.is_multiple_of(2),
            },
            1 => ArgValue::Unreadable,
            _ => ArgValue::String {
                text: "ü/é".into(),
                truncated: false,
            },
        };
        call.values[2] =
            ArgValue::Int([0, libc::O_CREAT | libc::O_WRONLY, -1][i as usize % 3].into());
        call.ret = [3, -2, 1 << 40, -4095, -4096][i as usize % 5];
        (call.parent_start, call.root_start) = match i % 5 {
            0 => (None, at),
            _ => (
                Some(at - Duration::from_micros(i)),
                at - Duration::from_secs(i % 61),
            ),
        };
        CallDetail::Declared(call)
    }

    /// The hand-written encoder's requests decode to exactly what the prost structs hold, and
    /// are the very bytes prost writes for them.
    #[test]
    fn requests_equal_the_prost_baseline() {
        let calls = varied_batch();
        let observed = 1_800_000_123_456_789;
        let both = Wanted {
            spans: true,
            logs: true,
        };
        let host = crate::HostInfo {
            host_name: "node-1".into(),
            host_id: Some("0123abcd".into()),
            kernel_release: "6.1.0".into(),
            os_name: Some("Debian GNU/Linux".into()),
        };
        let from_env = vec![("deployment.environment.name".into(), "prod".into())];
        for (per, service_name) in [
            (ResourcePer::Process, None),
            (ResourcePer::Process, Some("checkout".to_string())),
            (ResourcePer::Host, None),
        ] {
            let resources = Resources::new(
                &host,
                per,
                "instance-1".into(),
                from_env.clone(),
                service_name,
            );
            let scope = InstrumentationScope {
                name: "kspan".into(),
                version: "0.1.0".into(),
                ..InstrumentationScope::default()
            };
            let grouping = TraceGrouping::new("boot", Duration::from_secs(60));
            let encoder = CallEncoder::new(grouping.clone(), &resources, &scope);
            let baseline = ProstBaseline::new(grouping, &resources, &scope);
            let requests = encoder.requests_observed_at(&calls, both, observed);
            let (traces, logs) = (requests.traces.unwrap(), requests.logs.unwrap());
            let expected_traces = baseline.traces_request(&calls);
            let expected_logs = baseline.logs_request(&calls, observed);
            assert_eq!(
                ExportTraceServiceRequest::decode(traces.as_slice()).unwrap(),
                expected_traces,
                "{per:?}"
            );
            assert_eq!(
                ExportLogsServiceRequest::decode(logs.as_slice()).unwrap(),
                expected_logs,
                "{per:?}"
            );
            assert!(
                traces == expected_traces.encode_to_vec(),
                "{per:?}: trace bytes differ"
            );
            assert!(
                logs == expected_logs.encode_to_vec(),
                "{per:?}: log bytes differ"
            );
            // One signal alone is the same request.
            assert!(encoder.traces_request(&calls) == traces);
            let declared = expected_traces.resource_spans.iter().flat_map(|resource| {
                resource
                    .scope_spans
                    .iter()
                    .flat_map(|scope| scope.spans.iter())
            });
            assert!(
                declared
                    .filter(|span| span.name == "openat" && !span.parent_span_id.is_empty())
                    .count()
                    > 20,
                "the batch has declared calls with parents"
            );
            assert_eq!(
                expected_traces.resource_spans.len(),
                match per {
                    ResourcePer::Process => 4,
                    ResourcePer::Host => 1,
                }
            );
        }
    }

    proptest::proptest! {
        /// Any call encodes to protobuf that decodes back to the same values.
        #[test]
        fn any_call_round_trips(mask: u64, flags: i32, ufd: i32, ret: i32, cgroup_id: u64, pid: u32) {
            let mut call = with_signalfd(|call| {
                call.mask = kspan_decode::SignalMask(mask);
                call.flags = flags;
                call.ufd = ufd;
                call.ret = ret;
            });
            call.cgroup_id = cgroup_id;
            call.pid = pid;
            let mask = call.signalfd().unwrap().mask;
            let span = spans(std::slice::from_ref(&call)).1.remove(0);
            let attrs = &span.attributes;
            proptest::prop_assert_eq!(attribute(attrs, "signalfd.mask"), Some(&text(&mask.to_string())));
            proptest::prop_assert_eq!(attribute(attrs, "signalfd.mask.signals"), Some(&texts(&mask.names().collect::<Vec<_>>())));
            proptest::prop_assert_eq!(attribute(attrs, "kspan.cgroup.id").cloned(), Some(any_value::Value::IntValue(cgroup_id as i64)));
            proptest::prop_assert_eq!(attribute(attrs, "signalfd.ufd").cloned(), Some(any_value::Value::IntValue(ufd.into())));
            proptest::prop_assert_eq!(attribute(attrs, "process.pid").cloned(), Some(any_value::Value::IntValue(pid.into())));
            proptest::prop_assert_eq!(span.status.is_some(), ret < 0);
        }
    }
}
