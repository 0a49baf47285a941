//! Records dispatches, clears and copies, then submits them as one command buffer with one
//! compute pass per run of dispatches. Kernel parameters go into one uniform arena that is
//! written just before the submission and addressed with dynamic offsets.

use super::PARAM_STRIDE;
use anyhow::{bail, Result};
use std::sync::Arc;

/// Parameter blocks per submission; a longer recording is submitted in pieces.
const ARENA_SLOTS: u64 = 16384;

pub enum Command {
    Dispatch {
        pipe: Arc<wgpu::ComputePipeline>,
        bind: wgpu::BindGroup,
        offset: u32,
        groups: [u32; 3],
    },
    Clear(wgpu::Buffer),
    Copy {
        src: wgpu::Buffer,
        src_off: u64,
        dst: wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    },
}

pub struct Recorder {
    arena: wgpu::Buffer,
    params: Vec<u8>,
    commands: Vec<Command>,
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
        }
    }

    pub fn arena(&self) -> &wgpu::Buffer {
        &self.arena
    }

    /// Whether the arena is full: the caller submits before recording more.
    pub fn full(&self) -> bool {
        self.params.len() as u64 >= ARENA_SLOTS * PARAM_STRIDE
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
        self.commands.push(c);
    }

    pub fn submit(&mut self, device: &wgpu::Device, queue: &wgpu::Queue) {
        if self.commands.is_empty() {
            return;
        }
        if !self.params.is_empty() {
            queue.write_buffer(&self.arena, 0, &self.params);
        }
        let mut enc =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut commands = std::mem::take(&mut self.commands).into_iter().peekable();
        while let Some(c) = commands.next() {
            match c {
                Command::Dispatch {
                    pipe,
                    bind,
                    offset,
                    groups,
                } => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                    pass.set_pipeline(&pipe);
                    pass.set_bind_group(0, &bind, &[offset]);
                    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                    while let Some(Command::Dispatch { .. }) = commands.peek() {
                        if let Some(Command::Dispatch {
                            pipe,
                            bind,
                            offset,
                            groups,
                        }) = commands.next()
                        {
                            pass.set_pipeline(&pipe);
                            pass.set_bind_group(0, &bind, &[offset]);
                            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        }
                    }
                }
                Command::Clear(b) => enc.clear_buffer(&b, 0, None),
                Command::Copy {
                    src,
                    src_off,
                    dst,
                    dst_off,
                    bytes,
                } => enc.copy_buffer_to_buffer(&src, src_off, &dst, dst_off, bytes),
            }
        }
        queue.submit([enc.finish()]);
        self.params.clear();
    }
}
