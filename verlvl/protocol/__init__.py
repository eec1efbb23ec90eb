"""DataProto, veRL's batch type, and the helpers veRL's verl.protocol exports (same names, same semantics)."""

from verlvl.protocol.core import DataProto, DataProtoItem
from verlvl.protocol.equality import (DataProtoError, as_object_array, deep_equal, union_numpy_dict,
                                      union_tensor_dict, union_two_dict)
from verlvl.protocol.padding import DataProtoConfig, pad_dataproto_to_divisor, unpad_dataproto
from verlvl.protocol.reshape import fold_batch_dim, unfold_batch_dim

__all__ = ["DataProto", "DataProtoItem", "DataProtoConfig", "DataProtoError", "as_object_array", "deep_equal",
           "fold_batch_dim", "pad_dataproto_to_divisor", "unfold_batch_dim", "unpad_dataproto", "union_numpy_dict",
           "union_tensor_dict", "union_two_dict"]
