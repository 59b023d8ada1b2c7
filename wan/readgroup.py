"""Who reads the checkpoint in a gang: one rank per node, the others receive over the process group.

The ranks of a gang that share a host (and so its volumes) form a node group. Its lowest rank
reads every file once and broadcasts each chunk over the group (NCCL over NVLink on GPUs, gloo on
CPUs); the other ranks never open the checkpoint. A gang of N ranks on one node reads one copy,
not N. Each chunk is preceded by its index, so chunks go out in the order the reads complete;
index -1 tells the receivers that the reader failed, so they raise instead of waiting out the
collective timeout.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from wan.job import ParallelContext

ABORT = -1
CPU = torch.device("cpu")


class ReaderFailed(OSError):
    """The rank that reads for this node failed; the message is what it raised."""


@dataclass(frozen=True)
class ReadGroup:
    rank: int
    leader: int  # global rank of this node's reader
    group: Any = None  # the node's process group; None: no other rank needs the bytes
    device: torch.device = CPU  # where broadcast tensors live (NCCL: the GPU)

    @property
    def is_reader(self) -> bool:
        return self.rank == self.leader

    def share(self, obj: object) -> object:
        """The reader's `obj` on every rank of the group."""
        if self.group is None:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=self.leader, group=self.group, device=self.device)
        return box[0]

    def send_index(self, index: int) -> int:
        """The chunk index the reader sends next (ABORT: it failed), on every rank."""
        value = torch.tensor([index], dtype=torch.int64, device=self.device)
        dist.broadcast(value, src=self.leader, group=self.group)
        return int(value.item())

    def broadcast(self, tensor: torch.Tensor) -> None:
        dist.broadcast(tensor, src=self.leader, group=self.group)


def node_groups(hosts: list[str]) -> list[list[int]]:
    """Ranks by host, each group in rank order, groups in the order of their lowest rank."""
    groups: dict[str, list[int]] = {}
    for rank, host in enumerate(hosts):
        groups.setdefault(host, []).append(rank)
    return list(groups.values())


def read_group(parallel: ParallelContext) -> ReadGroup:
    """This rank's place in its node's reading. Collective: every rank of the gang calls it."""
    if parallel.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return ReadGroup(rank=0, leader=0)
    hosts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    nodes = node_groups(hosts)
    rank = dist.get_rank()
    device = torch.device(parallel.device) if dist.get_backend() == "nccl" else CPU
    mine = next(ranks for ranks in nodes if rank in ranks)
    group: Any = dist.group.WORLD
    if len(nodes) > 1:  # every rank takes part in creating every group
        made = [dist.new_group(ranks) for ranks in nodes]
        group = made[nodes.index(mine)]
    return ReadGroup(rank=rank, leader=mine[0], group=group if len(mine) > 1 else None, device=device)
