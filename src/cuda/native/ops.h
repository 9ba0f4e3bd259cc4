// Operation codes shared by the launchers and the binding. The binding exports these name lists
// (addon.unaryOps, .binaryOps, .reduceOps) so the TypeScript side looks codes up by name.
#pragma once

namespace wan {

#define WAN_UNARY_OPS(X)                                                                              \
  X(Abs) X(Neg) X(Exp) X(Expm1) X(Log) X(Log1p) X(Sqrt) X(Rsqrt) X(Square) X(Reciprocal) X(Sin)     \
  X(Cos) X(Tan) X(Asin) X(Acos) X(Atan) X(Sinh) X(Cosh) X(Tanh) X(Asinh) X(Acosh) X(Atanh)          \
  X(Sigmoid) X(Softplus) X(Relu) X(Relu6) X(Elu) X(Selu) X(Erf) X(Floor) X(Ceil) X(Round) X(Sign)   \
  X(IsNan) X(IsInf) X(IsFinite) X(LogicalNot) X(Step) X(LeakyRelu) X(ClipByValue) X(Identity)

#define WAN_BINARY_OPS(X)                                                                             \
  X(Add) X(Sub) X(Multiply) X(RealDiv) X(FloorDiv) X(Mod) X(Maximum) X(Minimum) X(Pow)              \
  X(SquaredDifference) X(Atan2) X(Equal) X(NotEqual) X(Less) X(LessEqual) X(Greater)                \
  X(GreaterEqual) X(LogicalAnd) X(LogicalOr) X(LogicalXor) X(Prelu)

#define WAN_REDUCE_OPS(X) X(Sum) X(Mean) X(Prod) X(Max) X(Min) X(All) X(Any)

#define WAN_ENUM_ITEM(name) name,
namespace un { enum Op : int { WAN_UNARY_OPS(WAN_ENUM_ITEM) Count }; }
namespace bin { enum Op : int { WAN_BINARY_OPS(WAN_ENUM_ITEM) Count }; }
namespace red { enum Op : int { WAN_REDUCE_OPS(WAN_ENUM_ITEM) Count }; }
#undef WAN_ENUM_ITEM

}  // namespace wan
