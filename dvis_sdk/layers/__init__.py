"""Small layers shared by the model components."""
from .attention import MLP, CrossAttentionLayer, FFNLayer, ReferringCrossAttentionLayer, SelfAttentionLayer
from .ms_deform_attn import MSDeformAttn, ms_deform_attn
from .position_encoding import PositionEmbeddingSine

__all__ = ["MLP", "CrossAttentionLayer", "FFNLayer", "ReferringCrossAttentionLayer", "SelfAttentionLayer",
           "MSDeformAttn", "ms_deform_attn", "PositionEmbeddingSine"]
