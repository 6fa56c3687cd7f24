//! In-process checks of the tensor surface that golden output does not cover well.
use crate::common::{eval, eval_bool, eval_f64};

#[test]
fn clone_is_shallow_and_clone_method_is_deep() {
    assert!(eval_bool("let a = torch::zeros([2]); let b = a; b[0] = 5.0; a[0].item() == 5.0"));
    assert!(eval_bool("let a = torch::zeros([2]); let b = a.clone(); b[0] = 5.0; a[0].item() == 0.0"));
}

#[test]
fn gradients_match_analytic_values() {
    // d/dx sum(sin(x) * x) = cos(x) * x + sin(x)
    let g = eval_f64(
        "let x = torch::tensor([0.3, 1.7], #{requires_grad: true});
         (x.sin() * x).sum().backward();
         let want = x.detach().cos() * x.detach() + x.detach().sin();
         (x.grad - want).abs().max().item()",
    );
    assert!(g < 1e-6, "{g}");
}

#[test]
fn matmul_operator_and_method_agree() {
    assert!(eval_bool("let a = torch::randn([3, 4]); let b = torch::randn([4, 2]); (a @ b).equal(a.matmul(b))"));
}

#[test]
fn var_is_usable_as_a_method_name() {
    let v = eval_f64("torch::tensor([1.0, 2.0, 3.0, 4.0]).var().item()");
    assert!((v - 1.6666666).abs() < 1e-5, "{v}");
}

#[test]
fn errors_never_panic_on_odd_inputs() {
    for src in [
        "torch::zeros([-1])",
        "torch::arange(0, 10, 0)",
        "torch::ones([2]).chunk(0)",
        "torch::ones([2]).split(0)",
        "torch::ones([2,2]).t().view(4)",
        "torch::tensor([1.0]).norm(\"nope\")",
        "torch::eye(-1)",
        "torch::randint(5, 5, [2])",
        "torch::ones([2]).gelu(\"fast\")",
        "torch::ones([3])[torch::tensor([1.5])]",
        "torch::ones([2]).slice(0, 0, 2, 0)",
        "torch::ones([2]).to(\"tpu\")",
    ] {
        let r = eval(src);
        assert!(r.is_err(), "{src} should fail");
    }
}
