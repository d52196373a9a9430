#include "kernels/cpu/williamson_table.h"

namespace quantd::kernels {

// Data, not derived here. n = 23, 29, 43: Hall, "Combinatorial Theory" (2nd ed., 1986), table of
// Williamson matrices (Baumert–Hall, Whiteman); n = 39: Londoño, "Construcción de matrices de
// Hadamard de tipo Williamson" (2013). Transcribed from the tables SageMath ships in
// sage/combinat/matrices/hadamard_matrix.py (williamson_type_quadruples_smallcases). The test
// suite checks every resulting matrix for H·Hᵀ = n·I, so a transcription error cannot pass.
const std::array<const char*, 4>* WilliamsonQuadruple(int64_t n) {
  static const std::array<const char*, 4> k23 = {
      "++---+---+-++-+---+---+", "+-++-++--++++++--++-++-", "+++---++-+-++-+-++---++",
      "+++-+++-+------+-+++-++"};
  static const std::array<const char*, 4> k29 = {
      "+++---++--+-+----+-+--++---++", "+-+---++--+-++++++-+--++---+-",
      "++++-++-+---++++++---+-++-+++", "++--+--+-+++-++++-+++-+--+--+"};
  static const std::array<const char*, 4> k39 = {
      "+++--+-+-----+--++----++--+-----+-+--++", "+++--++-+---+-+--+----+--+-+---+-++--++",
      "++++---+--++----+-+--+-+----++--+---+++", "+---++-+-+-----+++-++-+++-----+-+-++---"};
  static const std::array<const char*, 4> k43 = {
      "++---++++-+--+--++--------++--+--+-++++---+", "+++-+-++--+-+-++++-+----+-++++-+-+--++-+-++",
      "++-++++++----+-+--++-++-++--+-+----++++++-+", "+---++--++++-+-+++-++--++-+++-+-++++--++---"};
  switch (n) {
    case 23:
      return &k23;
    case 29:
      return &k29;
    case 39:
      return &k39;
    case 43:
      return &k43;
    default:
      return nullptr;
  }
}

}  // namespace quantd::kernels
