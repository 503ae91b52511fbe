"""The semantic family: models that predict one map per category, scored as instances.

* :class:`SemanticAdapter` / :class:`SemanticConfig`: the base class and its shared options; a
  subclass supplies ``build_network()`` and ``param_groups()``.
* :func:`multilabel_targets` and :class:`BceDiceLoss`: multi-label target maps and the loss.
* :func:`probs_to_instances`: threshold, opening, connected components, scores and boxes.
* :func:`network_batch`: normalise, resize and pad to the network's stride.
* :func:`backbone_groups`: staged-training groups of any backbone, by the stride of its outputs.
"""

from zoo.semantic.adapter import SemanticAdapter, SemanticConfig, SemanticRaw
from zoo.semantic.batching import network_batch
from zoo.semantic.instances import probs_to_instances
from zoo.semantic.stages import backbone_groups
from zoo.semantic.targets import BceDiceLoss, multilabel_targets

__all__ = ["BceDiceLoss", "SemanticAdapter", "SemanticConfig", "SemanticRaw", "backbone_groups",
           "multilabel_targets", "network_batch", "probs_to_instances"]
