//! Records dispatches, clears and copies, then submits them as one command buffer with one
//! compute pass per run of dispatches. Kernel parameters go into one uniform arena that is
//! written just before the submission and addressed with dynamic offsets.
//!
//! With a [`Profiler`] attached, every dispatch gets its own compute pass whose beginning and
//! end timestamps are resolved after the submission and added to per-kernel totals.

use super::PARAM_STRIDE;
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::sync::Arc;

/// Parameter blocks per submission; a longer recording is submitted in pieces.
const ARENA_SLOTS: u64 = 16384;

/// Timed dispatches per submission when profiling: two timestamps each fill wgpu's largest
/// query set (4096 queries).
const PROFILE_SLOTS: u32 = 2048;

pub enum Command {
    Dispatch {
        pipe: Arc<wgpu::ComputePipeline>,
        bind: wgpu::BindGroup,
        offset: u32,
        groups: [u32; 3],
        /// Kernel source name and entry point, the key of the profile.
        label: (&'static str, &'static str),
    },
    Clear {
        buf: wgpu::Buffer,
        offset: u64,
        bytes: u64,
    },
    Copy {
        src: wgpu::Buffer,
        src_off: u64,
        dst: wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    },
    /// A copy of whole rows of rgba32float texels from a buffer into a texture
    /// (`super::texels`).
    ToTexture {
        src: wgpu::Buffer,
        src_off: u64,
        texture: wgpu::Texture,
        rows: u32,
    },
}

/// GPU time of one kernel family (source name and entry point) over a profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: &'static str,
    pub entry: &'static str,
    pub dispatches: u64,
    pub ns: f64,
}

/// Timestamp queries and their readback, plus the totals so far.
pub struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
    totals: HashMap<(&'static str, &'static str), (u64, f64)>,
}

impl Profiler {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Profiler {
        let bytes = 2 * PROFILE_SLOTS as u64 * 8;
        Profiler {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * PROFILE_SLOTS,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period_ns: queue.get_timestamp_period() as f64,
            totals: HashMap::new(),
        }
    }

    /// The totals so far, longest first.
    pub fn kernel_times(&self) -> Vec<KernelTime> {
        let mut out: Vec<KernelTime> = self
            .totals
            .iter()
            .map(|(&(name, entry), &(dispatches, ns))| KernelTime {
                name,
                entry,
                dispatches,
                ns,
            })
            .collect();
        out.sort_by(|a, b| b.ns.total_cmp(&a.ns).then(a.name.cmp(b.name)));
        out
    }

    /// Waits for the submission that resolved `labels.len()` dispatches' timestamps and adds
    /// them to the totals.
    fn collect(
        &mut self,
        device: &wgpu::Device,
        labels: &[(&'static str, &'static str)],
    ) -> Result<()> {
        let bytes = labels.len() as u64 * 16;
        let slice = self.readback.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for GPU timestamps: {e}"))?;
        rx.recv()
            .map_err(|_| anyhow!("GPU timestamp readback was cancelled"))?
            .map_err(|e| anyhow!("mapping GPU timestamps: {e}"))?;
        let stamps: Vec<u64> = bytemuck::pod_collect_to_vec(
            &slice
                .get_mapped_range()
                .map_err(|e| anyhow!("reading mapped GPU timestamps: {e}"))?,
        );
        self.readback.unmap();
        for (label, t) in labels.iter().zip(stamps.chunks_exact(2)) {
            let e = self.totals.entry(*label).or_insert((0, 0.0));
            e.0 += 1;
            // A counter that wrapped or a driver that reorders gives a negative span: count 0.
            e.1 += t[1].saturating_sub(t[0]) as f64 * self.period_ns;
        }
        Ok(())
    }
}

pub struct Recorder {
    arena: wgpu::Buffer,
    params: Vec<u8>,
    commands: Vec<Command>,
    dispatches: u32,
    pub profiler: Option<Profiler>,
    /// Compute passes, and copies and clears, submitted so far.
    pub passes: u64,
    pub transfers: u64,
}

impl Recorder {
    pub fn new(device: &wgpu::Device) -> Recorder {
        Recorder {
            arena: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel parameters"),
                size: ARENA_SLOTS * PARAM_STRIDE,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            params: Vec::new(),
            commands: Vec::new(),
            dispatches: 0,
            profiler: None,
            passes: 0,
            transfers: 0,
        }
    }

    pub fn arena(&self) -> &wgpu::Buffer {
        &self.arena
    }

    /// Whether the arena is full: the caller submits before recording more.
    pub fn full(&self) -> bool {
        self.params.len() as u64 >= ARENA_SLOTS * PARAM_STRIDE
            || (self.profiler.is_some() && self.dispatches >= PROFILE_SLOTS)
    }

    /// Appends a parameter block and returns its dynamic offset.
    pub fn push_params(&mut self, params: &[u8]) -> Result<u32> {
        if params.len() as u64 > PARAM_STRIDE {
            bail!(
                "kernel parameter block of {} bytes exceeds {PARAM_STRIDE}",
                params.len()
            );
        }
        let offset = self.params.len();
        self.params.extend_from_slice(params);
        self.params.resize(offset + PARAM_STRIDE as usize, 0);
        Ok(offset as u32)
    }

    pub fn push(&mut self, c: Command) {
        self.dispatches += u32::from(matches!(c, Command::Dispatch { .. }));
        self.commands.push(c);
    }

    /// Submits the recording; when profiling, also waits for it and adds up its timestamps.
    pub fn submit(&mut self, device: &wgpu::Device, queue: &wgpu::Queue) -> Result<()> {
        if self.commands.is_empty() {
            return Ok(());
        }
        if !self.params.is_empty() {
            queue.write_buffer(&self.arena, 0, &self.params);
        }
        let mut enc =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut labels = Vec::new();
        let mut commands = std::mem::take(&mut self.commands).into_iter().peekable();
        self.dispatches = 0;
        let prof = self.profiler.as_ref();
        while let Some(c) = commands.next() {
            match c {
                Command::Dispatch {
                    pipe,
                    bind,
                    offset,
                    groups,
                    label,
                } => {
                    let timestamp_writes = prof.map(|p| {
                        let i = 2 * labels.len() as u32;
                        labels.push(label);
                        wgpu::ComputePassTimestampWrites {
                            query_set: &p.queries,
                            beginning_of_pass_write_index: Some(i),
                            end_of_pass_write_index: Some(i + 1),
                        }
                    });
                    self.passes += 1;
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes,
                    });
                    pass.set_pipeline(&pipe);
                    pass.set_bind_group(0, &bind, &[offset]);
                    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                    // Without profiling, the following dispatches share this pass.
                    while let (None, Some(Command::Dispatch { .. })) = (prof, commands.peek()) {
                        if let Some(Command::Dispatch {
                            pipe,
                            bind,
                            offset,
                            groups,
                            ..
                        }) = commands.next()
                        {
                            pass.set_pipeline(&pipe);
                            pass.set_bind_group(0, &bind, &[offset]);
                            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        }
                    }
                }
                Command::Clear { buf, offset, bytes } => {
                    self.transfers += 1;
                    enc.clear_buffer(&buf, offset, Some(bytes))
                }
                Command::Copy {
                    src,
                    src_off,
                    dst,
                    dst_off,
                    bytes,
                } => {
                    self.transfers += 1;
                    enc.copy_buffer_to_buffer(&src, src_off, &dst, dst_off, bytes)
                }
                Command::ToTexture {
                    src,
                    src_off,
                    texture,
                    rows,
                } => {
                    self.transfers += 1;
                    let width = super::TEXEL_ROW as u32;
                    enc.copy_buffer_to_texture(
                        wgpu::TexelCopyBufferInfo {
                            buffer: &src,
                            layout: wgpu::TexelCopyBufferLayout {
                                offset: src_off,
                                bytes_per_row: Some(width * 16),
                                rows_per_image: Some(rows),
                            },
                        },
                        texture.as_image_copy(),
                        wgpu::Extent3d {
                            width,
                            height: rows,
                            depth_or_array_layers: 1,
                        },
                    )
                }
            }
        }
        let n = labels.len() as u32;
        if let (Some(prof), true) = (&self.profiler, n > 0) {
            enc.resolve_query_set(&prof.queries, 0..2 * n, &prof.resolve, 0);
            enc.copy_buffer_to_buffer(&prof.resolve, 0, &prof.readback, 0, n as u64 * 16);
        }
        queue.submit([enc.finish()]);
        self.params.clear();
        match &mut self.profiler {
            Some(prof) if n > 0 => prof.collect(device, &labels),
            _ => Ok(()),
        }
    }
}
