"""The semantic family: models that predict one map per category, scored as instances.

* :class:`SemanticAdapter` / :class:`SemanticConfig`: the base class and its shared options; a
  subclass supplies ``build_network()`` and ``param_groups()``.
* :func:`multilabel_targets` and :class:`BceDiceLoss`: multi-label target maps and the loss;
  :func:`attribute_maps`: per-pixel attribute targets.
* :func:`probs_to_instances`: threshold, opening, connected components, scores and boxes;
  :func:`component_attributes`: an instance's mean attribute probabilities.
* :func:`network_batch`: normalise, resize and pad to the network's stride.
* :func:`backbone_groups`: staged-training groups of any backbone, by the stride of its outputs.
"""

from zoo.semantic.adapter import SemanticAdapter, SemanticConfig, SemanticRaw
from zoo.semantic.batching import network_batch
from zoo.semantic.instances import component_attributes, probs_to_instances
from zoo.semantic.stages import backbone_groups
from zoo.semantic.targets import BceDiceLoss, attribute_maps, multilabel_targets

__all__ = ["BceDiceLoss", "SemanticAdapter", "SemanticConfig", "SemanticRaw", "attribute_maps", "backbone_groups",
           "component_attributes", "multilabel_targets", "network_batch", "probs_to_instances"]
