pragma circom 2.1.0;

// Ties a proof to one task: `binding` is a public input derived from (chainId, registry, taskId, node)
// that nothing else in the circuit reads. Squaring it puts it in a constraint, so the compiler cannot
// optimise it away and a proof made for one binding fails verification under any other (Semaphore and
// tornado-core do the same with their signal hashes).
template TaskBinding() {
    signal input binding;
    signal bindingSquare;
    bindingSquare <== binding * binding;
}
